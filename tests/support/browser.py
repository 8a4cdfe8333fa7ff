"""Headless Chromium for the report tests: found, or installed from Debian's ``chromium`` package when missing and the
tests run as root (as CI does), so ``./dev test`` on a fresh machine checks the pages in a real browser.

Started with no network, sync, GPU or first-run work, and a fresh profile in a folder the caller gives (a pytest
temporary folder), HOME and the XDG folders inside it: nothing is written into the real HOME.
"""

from __future__ import annotations

import html.parser
import os
import shutil
import subprocess

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
MISSING = (
    "Chromium is needed to check the report pages in a browser: apt-get install chromium (Debian), or run the tests "
    "as root so they install it"
)


def apt_install(package: str) -> None:
    """``apt-get install`` one package, waiting for another apt run's lock (helpers may install side by side)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600", package],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
        timeout=1800,
    )


def debian_tool(command: str, package: str) -> str | None:
    """The path of ``command``, its Debian ``package`` installed first when missing and this runs as root (as CI
    does); None when it is not there."""
    found = shutil.which(command) or (("/usr/bin/" + command) if os.path.exists("/usr/bin/" + command) else None)
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        apt_install(package)
        found = shutil.which(command) or (("/usr/bin/" + command) if os.path.exists("/usr/bin/" + command) else None)
    return found


def find_chromium() -> str | None:
    """The Chromium binary (Debian's ``chromium``), installed when missing and this runs as root; else None."""
    return debian_tool("chromium", "chromium")


def chromium(binary: str, profile: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile folder ``profile``; stdout is text (the DOM with --dump-dom).

    Its HOME and XDG folders point into the profile too: Chromium writes its crash reports under the config folder
    and GTK its dconf cache under the cache folder even with --user-data-dir."""
    os.makedirs(profile, exist_ok=True)
    env = dict(os.environ, HOME=profile)
    env.update({"XDG_%s_HOME" % kind: os.path.join(profile, kind.lower()) for kind in ("CONFIG", "CACHE", "DATA")})
    command = [binary, *FLAGS, "--user-data-dir=%s" % os.path.join(profile, "data"), *args]
    return subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=timeout, check=False, env=env
    )


def dump_dom(binary: str, profile: str, path: str) -> str:
    """The DOM of the page at ``path`` once loaded (and any script run), serialized by Chromium."""
    done = chromium(binary, profile, "--dump-dom", "file://%s" % os.path.abspath(path))
    assert done.returncode == 0 and "<html" in done.stdout, (done.returncode, done.stdout[:500])
    return done.stdout


class Elements(html.parser.HTMLParser):
    """Every element of a serialized DOM: its tag, its attributes, and the document's text and title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: dict[str, int] = {}
        self.attributes: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        self.attributes.extend((tag, name, value) for name, value in attrs)
        self._in_title = tag == "title" and not self.title

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data


def elements(dom: str) -> Elements:
    parsed = Elements()
    parsed.feed(dom)
    return parsed
