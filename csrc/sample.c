/* Sampling one token per row of logits: temperature, top-k, top-p, then one draw of a counter-based
 * uniform number, in float64. Every sum runs in the order backends/numpy/sample.py states, and exp is the
 * C library's (the oracle's math.exp), so both return the same token for the same logits and u. */
#include <string.h>
#include "common.h"
#include "sample.h"

double hr_sample_uniform(uint64_t seed, int64_t stream, int64_t pos) {
    uint64_t key = hr_splitmix64(hr_splitmix64(seed) + (uint64_t)stream);
    return (double)(hr_splitmix64(key + (uint64_t)pos) >> 11) * 0x1p-53;
}

typedef struct {
    double e;
    int i;
} sample_entry;

/* descending e, ties by ascending index (NumPy's stable argsort of −e) */
static int sample_cmp(const void *pa, const void *pb) {
    const sample_entry *a = pa, *b = pb;
    if (a->e != b->e) return a->e < b->e ? 1 : -1;
    return (a->i > b->i) - (a->i < b->i);
}

/* the k-th largest of a[0..n) (1 <= k <= n), reordering a: Hoare's selection, O(n) expected */
static double kth_largest(double *a, int n, int k) {
    int lo = 0, hi = n - 1, target = k - 1;
    while (lo < hi) {
        double pivot = a[lo + (hi - lo) / 2], t;
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) t = a[i], a[i++] = a[j], a[j--] = t;
        }
        if (target <= j) hi = j;
        else if (target >= i) lo = i;
        else break;  /* a[j+1 .. i-1] all equal the pivot */
    }
    return a[target];
}

/* one id from logits (V,); e: V doubles, entries: V sample_entry (2·V doubles) */
static int64_t sample_row(const float *logits, int V, double u, double temperature, int top_k, double top_p, double *e,
                          sample_entry *entries) {
    int best = 0;
    for (int i = 0; i < V; i++) {
        if (!isfinite(logits[i])) return -1;
        if (logits[i] > logits[best]) best = i;
    }
    if (temperature == 0) return best;
    double threshold = -INFINITY, m = -INFINITY;
    for (int i = 0; i < V; i++) e[i] = (double)logits[i] / temperature;
    if (top_k > 0 && top_k < V) {
        double *copy = (double *)entries;
        memcpy(copy, e, (size_t)V * sizeof(double));
        threshold = kth_largest(copy, V, top_k);
    }
    for (int i = 0; i < V; i++)
        if (e[i] >= threshold) m = HR_MAX(m, e[i]);
    int kept = 0;
    for (int i = 0; i < V; i++) {
        e[i] = e[i] >= threshold ? exp(e[i] - m) : 0.0;
        if (top_p < 1.0 && e[i] > 0.0) entries[kept].e = e[i], entries[kept++].i = i;
    }
    if (top_p < 1.0 && kept > 0) {
        qsort(entries, (size_t)kept, sizeof(sample_entry), sample_cmp);
        double total = 0.0, before = 0.0;
        for (int j = 0; j < kept; j++) total += entries[j].e;
        for (int j = 0; j < kept; j++) {
            if (before >= top_p * total) e[entries[j].i] = 0.0;
            before += entries[j].e;
        }
    }
    double total = 0.0, c = 0.0;
    int last = 0;
    for (int i = 0; i < V; i++) {
        total += e[i];
        if (e[i] > 0.0) last = i;
    }
    double x = u * total;
    for (int i = 0; i < V; i++) {
        c += e[i];
        if (c > x) return i;
    }
    return last;  /* u · total rounded up to total */
}

void hr_sample(const float *logits, const int64_t *pos, int64_t *ids, int B, int V, uint64_t seed, double temperature,
               int top_k, double top_p, double *scratch) {
    for (int b = 0; b < B; b++)
        ids[b] = sample_row(logits + (size_t)b * V, V, hr_sample_uniform(seed, b, pos[b]), temperature, top_k, top_p,
                            scratch, (sample_entry *)(scratch + V));
}
