"""Map-style dataset over records: (image tensor, label, camid, modality)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from runtime.preprocess import ImageDecodeError, decode_image

from .records import Record
from .transforms import apply_pseudo_ir

__all__ = ["ReIDDataset", "load_image"]


@functools.lru_cache(maxsize=24576)
def _thermal(path: str) -> Image.Image:
    # The pseudo-thermal rendering costs milliseconds an image and is deterministic: render each once
    # per process. A Market-1501 crop is 64x128 (24 KB), so 24576 of them hold about 600 MB: every
    # image of a full Market-1501 training split (12,936), so data.market_both never re-renders.
    return apply_pseudo_ir(decode_image(path), "thermal")


def load_image(record: Record, seed: int | None = None) -> Image.Image:
    """Decode ``record.path`` (EXIF-aware, refusing broken files) and apply its pseudo-IR conversion
    (``seed`` draws a random rendering, "randmap"; None renders each image always alike)."""
    if record.pseudo_ir == "thermal":
        return _thermal(record.path)
    im = decode_image(record.path)
    return apply_pseudo_ir(im, record.pseudo_ir, seed) if record.pseudo_ir else im


class ReIDDataset(Dataset):
    """``pid_label`` is the pid relabelled to 0..C-1 in ascending pid order (``pid2label``)."""

    def __init__(self, records: Sequence[Record], transform: Callable[[Image.Image], torch.Tensor]) -> None:
        if not records:
            raise ValueError("no records: the dataset is empty; check the data root and split")
        self.records = list(records)
        self.transform = transform
        self.pid2label = {pid: i for i, pid in enumerate(sorted({r.pid for r in self.records}))}

    @property
    def num_classes(self) -> int:
        return len(self.pid2label)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, int]:
        r = self.records[i]
        try:
            # a random rendering draws a new map at every visit, from torch's generator (seeded per worker)
            seed = int(torch.randint(2**62, (1,))) if r.pseudo_ir == "randmap" else None
            x = self.transform(load_image(r, seed))
        except ImageDecodeError:
            raise  # already one line naming the file
        except Exception as e:  # any other failure still names the file, in one line
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ImageDecodeError(f"{r.path}: cannot load ({reason}); re-copy or remove the file") from e
        return x, self.pid2label[r.pid], r.camid, r.modality
