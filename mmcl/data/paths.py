"""Where the data lives, and paths that cannot escape it.

MMCL_DATA_DIR overrides; otherwise `../shared/data` beside the checkout (the layout CI and developers
have). Nothing is downloaded at run time: a missing folder gives a message with the fetch commands.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmcl.errors import DataError, MissingDataError

ENV_VAR = "MMCL_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]

FETCH_HELP = """\
mmcl reads public datasets from a local data directory and never downloads at run time.
Set {env}=/path/to/data, or place the data at {default}. To fetch the same public data (online):
  # SentEval downstream data (STS12-16, STS-B, SICK, MR, CR, SUBJ, MPQA, SST, TREC, MRPC):
  git clone --depth 1 https://github.com/facebookresearch/SentEval /tmp/SentEval
  (cd /tmp/SentEval/data/downstream && ./get_transfer_data.bash)
  mkdir -p "$DATA/senteval" && cp -r /tmp/SentEval/data/downstream "$DATA/senteval/"
  # Flickr8k images + captions (Hodosh et al. 2013, research use):
  https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip
  https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_text.zip
  then lay them out as $DATA/flickr8k_subset1000_tri/{{images/,captions.csv}} (see mmcl data check)."""


def default_data_dir() -> Path:
    return REPO_ROOT.parent / "shared" / "data"


def data_dir(override: str | os.PathLike | None = None, *, must_exist: bool = True) -> Path:
    """The data root: explicit override, else $MMCL_DATA_DIR, else ../shared/data beside the checkout."""
    chosen = override or os.environ.get(ENV_VAR) or default_data_dir()
    root = Path(chosen).expanduser().resolve()
    if must_exist and not root.is_dir():
        raise MissingDataError(
            f"data directory {root} does not exist.\n" + FETCH_HELP.format(env=ENV_VAR, default=default_data_dir())
        )
    return root


def dataset_dir(name: str, override: str | os.PathLike | None = None) -> Path:
    """A dataset folder inside the data root, with a clear message when it is missing."""
    root = data_dir(override)
    path = safe_join(root, name)
    if not path.is_dir():
        raise MissingDataError(
            f"dataset folder {path} is missing from the data directory {root}.\n"
            + FETCH_HELP.format(env=ENV_VAR, default=default_data_dir())
        )
    return path


def safe_join(root: str | os.PathLike, relative: str | os.PathLike, *, source: str | os.PathLike | None = None) -> Path:
    """root/relative, refusing absolute paths and any `..` or symlink that leaves root.

    `source` names the manifest the path came from, for the error message.
    """
    root_path = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise DataError(source or root_path, f"absolute path {str(relative)!r} is not allowed (must be inside {root_path})")
    candidate = (root_path / rel).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        raise DataError(source or root_path, f"path {str(relative)!r} escapes the dataset root {root_path}")
    return candidate


def symlink_on_path(root: str | os.PathLike, relative: str) -> Path | None:
    """The first symbolic link met walking `relative` down from `root` (root itself excluded), or None.
    Media behind a link can change (or point anywhere) after validation, so links are refused even
    when they stay inside the root."""
    top = here = Path(root)
    if Path(relative).is_absolute():
        return None  # refused as absolute by safe_join
    for part in Path(relative).parts:
        if part == "..":
            if here == top:
                return None  # escapes: refused by safe_join
            here = here.parent
            continue
        here = here / part
        if here.is_symlink():
            return here
        if not here.exists():
            return None
    return None


def symlink_reason(link: Path) -> str:
    """Why a path through `link` is refused (for a reason that starts with the field and the path)."""
    try:
        target = os.readlink(link)
    except OSError:
        target = "?"
    return f"is a symbolic link ({link.name} -> {target}): refused, put the file itself in the drop"
