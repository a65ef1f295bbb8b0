"""A converted checkpoint's tokenizer: the Hugging Face folder's tokenizer.json, copied beside the
checkpoint as <checkpoint without its extension>.tokenizer.json, read with the optional `tokenizers`
package (pip install tokenizers) when a text prompt is given. Without either, a converted model
still generates from token ids (hybridref generate --prompt-ids)."""
import os
import shutil

from ..errors import UserError

FILE = "tokenizer.json"


def tokenizer_beside(checkpoint):
    """Where the tokenizer of the checkpoint at `checkpoint` lives."""
    return os.path.splitext(checkpoint)[0] + "." + FILE


def copy_tokenizer(src, dst):
    """Copy the tokenizer file src to dst when there is one (a checkpoint need not have one); -> dst or None."""
    if not os.path.isfile(src):
        return None
    shutil.copyfile(src, dst)
    return dst


def load_tokenizer(checkpoint):
    """The `tokenizers.Tokenizer` beside `checkpoint`; UserError saying what is missing and what to do."""
    path = tokenizer_beside(checkpoint)
    if not os.path.isfile(path):
        raise UserError(f"{checkpoint} has no character vocabulary and no tokenizer beside it ({path}): give the "
                        f"prompt as token ids (--prompt-ids 1,2,3), or convert the model again from a folder "
                        f"that holds {FILE}")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError(f"a text prompt needs the optional `tokenizers` package to read {path} (pip install "
                        f"tokenizers), or give the prompt as token ids (--prompt-ids 1,2,3)") from None
    try:
        return Tokenizer.from_file(path)
    except Exception as e:  # noqa: BLE001 -- the library parses the file: any failure means a damaged tokenizer
        raise UserError(f"{path} is not a tokenizer the `tokenizers` package reads ({e})") from None
