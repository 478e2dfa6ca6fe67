"""`bench leaderboard`: start the Streamlit page on a results home, headless, on
127.0.0.1 only (the page is a local viewer, not a public server), usage stats off."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

APP = Path(__file__).with_name("app.py")


def command(home: Path, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
        "--", "--home", str(Path(home).resolve()),
    ]


def serve(home: Path | None, port: int = 8501) -> None:
    """Replace this process with the Streamlit server (so stopping it stops the server)."""
    from .data import default_home

    home = home or default_home()
    if importlib.util.find_spec("streamlit") is None:
        raise RuntimeError("streamlit is not installed: pip install streamlit (or run scripts/setup_browser.sh)")
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    cmd = command(home, port)
    print(f"leaderboard for {Path(home).resolve()} at http://127.0.0.1:{port}  (Ctrl+C stops it)", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)
