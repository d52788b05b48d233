"""`ecmnet-ros-register`: make a venv an ament prefix for ecmnet_ros, so that after
`pip install -e .` the ROS 2 tools find the package as they do in a colcon install space:
`ros2 launch ecmnet_ros segment.launch.py`, `ros2 run ecmnet_ros ecmnet_segmentation`,
`ros2 pkg executables ecmnet_ros`.

Why: those tools look for <prefix>/share/ament_index/resource_index/packages/ecmnet_ros,
<prefix>/share/ecmnet_ros/{package.xml,launch,config} and <prefix>/lib/ecmnet_ros/<executable>.
An editable pip install writes none of them (its console scripts go to <prefix>/bin). This writes
them as symlinks: share/ to the checkout (edits apply at once, like colcon --symlink-install),
lib/ecmnet_ros/* to the console scripts in bin/.

    ecmnet-ros-register                  # into the running Python's prefix (the active venv)
    ecmnet-ros-register --prefix DIR     # elsewhere
    ecmnet-ros-register --remove         # undo
    export AMENT_PREFIX_PATH=<prefix>${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
"""
from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import List, Optional

from ecmnet_core.cli.common import path_arg     # --prefix "" (an unset variable) would mean the current dir

PACKAGE = "ecmnet_ros"
SHARE_ITEMS = ("package.xml", "launch", "config")


class RegisterError(Exception):
    """A problem the user can fix; printed as one `error:` line."""


def source_share() -> Path:
    """Where package.xml, launch/ and config/ are: the checkout for an editable install, else the
    share/ecmnet_ros a regular `pip install .` put under sys.prefix."""
    checkout = Path(__file__).resolve().parents[1]
    if all((checkout / item).exists() for item in SHARE_ITEMS):
        return checkout
    installed = Path(sys.prefix) / "share" / PACKAGE
    if all((installed / item).exists() for item in SHARE_ITEMS):
        return installed
    raise RegisterError(f"cannot find package.xml, launch/ and config/ of {PACKAGE} (looked in {checkout} "
                        f"and {installed})")


def console_scripts() -> List[Path]:
    """This distribution's console scripts, as installed in the running Python's scripts dir."""
    bin_dir = Path(sysconfig.get_path("scripts"))
    try:
        names = sorted(ep.name for ep in metadata.distribution(PACKAGE).entry_points
                       if ep.group == "console_scripts")
    except metadata.PackageNotFoundError:
        raise RegisterError(f"{PACKAGE} is not pip-installed in {sys.prefix} (pip install -e .)") from None
    scripts = [bin_dir / n for n in names if (bin_dir / n).is_file()]
    if not scripts:
        raise RegisterError(f"none of {PACKAGE}'s console scripts are in {bin_dir}")
    return scripts


def _links(prefix: Path):
    """[(link path, target)] this tool owns under `prefix`."""
    share = source_share()
    links = []
    dest = prefix / "share" / PACKAGE
    if share.resolve() != dest.resolve():
        # `ros2 launch <pkg> <file>` finds launch files with os.walk, which does not enter
        # symlinked folders: one link per launch file. config/ is only opened by path (the launch
        # file), so it is one folder link and files added to the checkout appear at once.
        links += [(dest / "package.xml", share / "package.xml"), (dest / "config", share / "config")]
        links += [(dest / "launch" / f.name, f) for f in sorted((share / "launch").glob("*.py"))]
    links += [(prefix / "lib" / PACKAGE / script.name, script) for script in console_scripts()]
    return links


def _marker(prefix: Path) -> Path:
    return prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE


def _check_writable(path: Path, link: bool = True) -> None:
    """RegisterError when `path` cannot be written: something else is in its place, or a file sits
    where one of its folders must be."""
    if link and path.exists() and not path.is_symlink():
        raise RegisterError(f"{path} exists and is not a link (installed by something else?); "
                            "remove it or register into another --prefix")
    if not link and path.exists() and not path.is_file():
        raise RegisterError(f"{path} exists and is not a file; remove it or register into another --prefix")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RegisterError(f"cannot write {path}: {parent} is not a directory")
            return


def _symlink(link: Path, target: Path) -> None:
    _check_writable(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)             # atomic: the old link or the new one, never none


def register(prefix: Path) -> List[Path]:
    links = _links(prefix)
    # every path is checked before the first is written: a prefix that cannot take one of them
    # fails without leaving half a registration behind
    for link, _ in links:
        _check_writable(link)
    _check_writable(_marker(prefix), link=False)
    for folder in (prefix / "share" / PACKAGE / "launch", prefix / "lib" / PACKAGE):
        for stale in folder.glob("*") if folder.is_dir() else ():
            if stale.is_symlink() and not stale.exists():      # left by a file since removed
                stale.unlink()
    for link, target in links:
        _symlink(link, target)
    marker = _marker(prefix)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return [marker] + [link for link, _ in links]


def unregister(prefix: Path) -> List[Path]:
    removed = []
    for link, _ in _links(prefix):
        if link.is_symlink():
            link.unlink()
            removed.append(link)
    marker = _marker(prefix)
    if marker.is_file() and not (prefix / "share" / PACKAGE / "package.xml").exists():
        marker.unlink()
        removed.append(marker)
    for folder in (prefix / "lib" / PACKAGE, prefix / "share" / PACKAGE / "launch", prefix / "share" / PACKAGE):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


class _Parser(argparse.ArgumentParser):
    def error(self, message):            # one `error:` line, exit 2 (argparse prints usage first)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: Optional[List[str]] = None) -> int:
    parser = _Parser(prog="ecmnet-ros-register", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", type=path_arg, default=Path(sys.prefix),
                        help="ament prefix to write into (default: %(default)s)")
    parser.add_argument("--remove", action="store_true", help="remove what a previous run wrote")
    args = parser.parse_args(argv)
    prefix = args.prefix.absolute()
    try:
        paths = unregister(prefix) if args.remove else register(prefix)
    except (RegisterError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verb = "removed from" if args.remove else "registered in"
    print(f"{PACKAGE} {verb} {prefix} ({len(paths)} entries)")
    if not args.remove:
        current = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
        if str(prefix) not in current:
            print(f"now: export AMENT_PREFIX_PATH={prefix}${{AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
