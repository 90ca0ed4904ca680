"""The model's rule parsers against the real tools: what the model calls malformed, the kernel
(via iptables-restore / nft -f) refuses too; what it calls unsupported, the kernel accepts; the
fixtures load as they are. Each load runs in its own throwaway network namespace
(`unshare --net`), so nothing is left behind and nothing outside is touched.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "model"))

import rules_fixtures as fx  # noqa: E402
from test_iptables_syntax import BAD as IPT_BAD  # noqa: E402
from test_nft_syntax import BAD as NFT_BAD  # noqa: E402

from nat.rules.ast import RuleSyntaxError  # noqa: E402


def load(argv: list[str], text: str) -> subprocess.CompletedProcess[str]:
    """Feed `text` to `argv` on stdin inside a fresh network namespace."""
    return subprocess.run(["unshare", "--net", "--", *argv], input=text, text=True,
                          capture_output=True, timeout=30, check=False)


# Unsupported inputs the kernel still refuses, for reasons outside the rules themselves.
IPT_EXPECTED_REFUSED = {
    "host name": "the name does not resolve (no DNS in the test)",
}
NFT_EXPECTED_REFUSED: dict[str, str] = {}
# Refused by the model and by iptables-legacy, accepted (and ignored) by iptables-nft.
IPT_LEGACY_ONLY = {
    "policy": "a policy on a user chain (`:X ACCEPT`): iptables-nft ignores it",
}


@pytest.mark.parametrize(("text", "kind", "lineno", "needle"), IPT_BAD,
                         ids=[f"{i}-{b[3][:24]}" for i, b in enumerate(IPT_BAD)])
def test_iptables_restore_agrees_on_bad_and_unsupported(text: str, kind: type[Exception],
                                                         lineno: int, needle: str) -> None:
    tool = "iptables-legacy-restore" if needle in IPT_LEGACY_ONLY else "iptables-restore"
    res = load([tool], text)
    refused = kind is RuleSyntaxError or needle in IPT_EXPECTED_REFUSED
    assert (res.returncode != 0) == refused, res.stderr


@pytest.mark.parametrize(("text", "kind", "lineno", "needle"), NFT_BAD,
                         ids=[f"{i}-{b[3][:24]}" for i, b in enumerate(NFT_BAD)])
def test_nft_agrees_on_bad_and_unsupported(text: str, kind: type[Exception], lineno: int,
                                           needle: str) -> None:
    res = load(["nft", "-f", "-"], text)
    refused = kind is RuleSyntaxError or needle in NFT_EXPECTED_REFUSED
    assert (res.returncode != 0) == refused, res.stderr


@pytest.mark.parametrize("name", ["A_RULES", "B_RULES", "SEED_DNAT_UDP", "SEED_SNAT_TCP"])
def test_iptables_fixtures_load(name: str) -> None:
    for tool in ("iptables-restore", "iptables-legacy-restore"):
        res = load([tool], getattr(fx, name))
        assert res.returncode == 0, (tool, res.stderr)


@pytest.mark.parametrize("name", ["A_TRANSLATED", "B_TRANSLATED", "B_LISTED", "HAND_NFT",
                                  "HAND_LISTED"])
def test_nft_fixtures_load(name: str) -> None:
    res = load(["nft", "-f", "-"], getattr(fx, name))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", ["SEED_DNAT_UDP", "SEED_SNAT_TCP"])
def test_seed_translations_are_refused_by_nft(name: str) -> None:
    res = load(["iptables-restore-translate", "-f", "/dev/stdin"], getattr(fx, name))
    assert res.returncode == 0, res.stderr
    refused = load(["nft", "-f", "-"], res.stdout)
    assert refused.returncode != 0
    assert "No such file or directory" in refused.stderr


@pytest.mark.parametrize("name", ["A", "B"])
def test_translations_are_still_what_the_tool_prints(name: str) -> None:
    res = load(["iptables-restore-translate", "-f", "/dev/stdin"],
               getattr(fx, f"{name}_RULES"))
    assert res.returncode == 0, res.stderr

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("# ")]

    assert body(res.stdout) == body(getattr(fx, f"{name}_TRANSLATED"))


def test_a_listing_does_not_always_load_back() -> None:
    # `nft list` prints the DNAT range 192.168.1.8-192.168.1.9 as 192.168.1.8/31, which nft
    # 1.0.6 cannot read back; the model's parser reads it (see test_nft_syntax.py).
    res = load(["nft", "-f", "-"], fx.A_LISTED)
    assert res.returncode != 0
    assert "192.168.1.8/31" in res.stderr


@pytest.fixture()
def netns() -> Iterator[str]:
    """A named, run-scoped namespace for a test that needs two commands in one place."""
    name = f"natlab-rules-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True, timeout=10)


@pytest.mark.parametrize(("source", "listed"), [("A_TRANSLATED", "A_LISTED"),
                                                ("B_TRANSLATED", "B_LISTED"),
                                                ("HAND_NFT", "HAND_LISTED")])
def test_listings_are_still_what_nft_prints(netns: str, source: str, listed: str) -> None:
    def in_ns(argv: list[str], text: str | None = None) -> str:
        res = subprocess.run(["ip", "netns", "exec", netns, *argv], input=text, text=True,
                             capture_output=True, timeout=30, check=False)
        assert res.returncode == 0, (argv, res.stderr)
        return res.stdout

    in_ns(["nft", "-f", "-"], getattr(fx, source))
    assert in_ns(["nft", "list", "ruleset"]).strip() == getattr(fx, listed).strip()
    in_ns(["nft", "flush", "ruleset"])
