"""Synthetic and sequence tasks for the measured experiments, each a seeded generator of examples.

A task is an object with
    name, vocab_size, seq_len              the token vocabulary of inputs and targets, the length T
    sample(n, rng) -> (inputs, targets, mask)
        inputs, targets int64 (n, T); mask bool (n, T): the scored positions, where targets[i, t] is
        what the model must predict after reading inputs[i, :t+1] (elsewhere targets hold 0, unused)
    test_set(seed) -> (inputs, targets, mask)  the held-out examples: generated from a stream of
        seeds disjoint from every training stream (hybridref/tasks/seeds.py), or the official test set

mqar.py               multi-query associative recall (Arora et al. 2023, Zoology)
selective_copying.py  selective copying (Gu & Dao 2023, Mamba, section 4.1.1)
induction_heads.py    induction heads (Olsson et al. 2022; Mamba, section 4.1.2)
few_shot.py           N-way K-shot in-context classification (Chan et al. 2022), labels drawn per example
sequential_mnist.py   sequential and permuted sequential MNIST, one pixel a token
train.py              train a character-LM-style model on a task, score it on held-out data
"""
