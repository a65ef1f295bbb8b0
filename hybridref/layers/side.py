"""Side inputs: arrays that cross layers within one pass, beside the residual stream.

Some models feed a layer with something other than the previous layer's output: RWKV-7's value
residual (layer 0's v reaches every later layer), Zamba's shared block (the original token
embedding, at each of its calls), Hymba's key/value sharing between consecutive layers. The model
makes one `SideInputs` per pass (forward or decode step), holding the token embedding as "embed",
and hands it to every block; a mixer that produces a side input `put`s it, one that reads it `get`s
it. Backward runs the layers in reverse, so a reader's backward comes before its producer's: the
reader `add_grad`s the gradient of what it read, the producer `pop_grad`s the sum and adds it to its
own. The model adds pop_grad("embed") to the embedding's gradient.

Nothing else needs to know: side inputs are per-position arrays of the tokens a process holds, so
the MPI backend slices them like the residual stream (no messages), and a decode step passes one
token's worth. The C decoder shares a buffer between the layers' records instead
(backends/c/decode.py).
"""


class SideInputs:
    def __init__(self, **arrays):
        self._values = dict(arrays)
        self._grads = {}

    def put(self, name, value):
        if name in self._values:
            raise ValueError(f"side input {name!r} is already set in this pass (two producers?)")
        self._values[name] = value

    def __contains__(self, name):
        """Whether `name` is set in this pass (a layer that is the first of its kind produces it)."""
        return name in self._values

    def get(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise ValueError(f"side input {name!r} is not set in this pass; set: {sorted(self._values)} "
                             f"(is the layer that produces it missing or later in the pattern?)") from None

    def add_grad(self, name, grad):
        """Backward of a reader: the gradient of the side input it read."""
        self._grads[name] = grad if name not in self._grads else self._grads[name] + grad

    def pop_grad(self, name):
        """Backward of the producer: the summed gradient of its side input from every reader (None: no reader)."""
        return self._grads.pop(name, None)
