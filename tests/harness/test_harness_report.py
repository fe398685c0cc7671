"""The result document, the text summary and the self-contained HTML report."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from runtime.harness import report_html, summary
from runtime.harness.load import LoadShape
from runtime.harness.results import OK, Outcome, Recorder, RunResult
from runtime.harness.runner import BenchPlan, document

#: where the headless-browser check looks for chromium (overridable for a local install)
CHROMIUM = os.environ.get("WARMSTART_TEST_CHROMIUM", "/usr/bin/chromium")


class FakeTarget:
    label = "warmstart"
    expect_cold = False

    async def start(self) -> None:
        pass

    async def call(self, payload: bytes) -> Outcome:
        return OK

    async def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "embedded",
            "function": "f",
            "handler": "app.handler",
            "code": "/code",
            "memory_mb": 128,
            "start": "fork",
            "backend": "process",
            "cold": False,
        }


def known_run(label: str, scale: float = 1.0) -> RunResult:
    """Five requests completing in seconds 0, 1, 1, 3 and 3 (none in second 2), with
    latencies of 1, 2, 3, 2 and 1 ms: three distinct histogram buckets."""
    rec = Recorder()
    rec.begin(0.0)
    for done, ms in ((0.5, 1), (1.2, 2), (1.7, 3), (3.1, 2), (3.9, 1)):
        rec.record(done - ms * scale / 1000, done, OK)
    return RunResult(label, rec, 4.0)


def known_doc() -> dict[str, Any]:
    plan = BenchPlan(FakeTarget(), LoadShape(requests=5), b"{}", ("raw",), 1)
    return document(plan, known_run("warmstart"), {"raw": known_run("raw", 0.5)})


class Elements(HTMLParser):
    """Start tags with their attributes and the id of the SVG they are in."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None], str | None]] = []
        self.svg: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "svg":
            self.svg = attributes.get("id")
        self.tags.append((tag, attributes, self.svg))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self.svg = None

    def count(self, tag: str, svg: str, cls: str | None = None) -> int:
        return sum(
            1
            for t, attrs, inside in self.tags
            if t == tag and inside == svg and (cls is None or attrs.get("class") == cls)
        )


def parsed(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser


def test_document_schema() -> None:
    doc = known_doc()
    assert doc["schema"] == "warmstart.bench/1"
    assert set(doc) == {
        "schema",
        "created",
        "host",
        "target",
        "load",
        "result",
        "cold_check",
        "baselines",
    }
    result = doc["result"]
    assert result["requests"] == 5
    assert result["throughput_rps"] == pytest.approx(1.25)
    assert result["latency_ms"] == {
        "p50": 2.0,
        "p90": 3.0,
        "p99": 3.0,
        "p99.9": 3.0,
        "min": 1.0,
        "max": 3.0,
        "mean": 1.8,
    }
    assert [t["requests"] for t in result["timeline"]] == [1, 2, 0, 2]
    assert result["timeline"][2]["p50_ms"] is None
    assert doc["baselines"]["raw"]["ratios"] == {"throughput": 1.0, "p50": 2.0, "p99": 2.0}
    assert doc["cold_check"] is None


def test_text_summary_puts_ratios_beside_the_figures() -> None:
    text = summary.render(known_doc())
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith(" "))
    assert header.split() == ["warmstart", "raw", "ratio"]
    p50 = next(line for line in lines if line.startswith("latency p50"))
    assert p50.split()[-1] == "2.00x"
    assert "errors: none" in text


def test_report_is_self_contained_with_both_plots() -> None:
    page = report_html.render(known_doc())
    elements = parsed(page)
    for tag, attrs, _ in elements.tags:
        assert tag != "script"
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not value.startswith(("http://", "https://", "//")), (tag, attrs)
    assert "http://" not in page
    assert "https://" not in page
    assert elements.count("rect", "latency-histogram", "bar") == 3
    assert elements.count("rect", "latency-over-time", "tput") == 4
    assert elements.count("circle", "latency-over-time", "p50") == 3
    assert elements.count("circle", "latency-over-time", "p99") == 3
    assert elements.count("polyline", "latency-over-time") == 2
    assert any(attrs.get("data-testid") == "summary" for _, attrs, _ in elements.tags)


def test_histogram_plot_merges_many_buckets_into_log_bins() -> None:
    rec = Recorder()
    rec.begin(0.0)
    for us in range(100, 500_000, 997):
        rec.record(0.0, us / 1e6, OK)
    buckets = rec.latency.to_dict()["buckets"]
    assert len(buckets) > report_html.MAX_BARS
    bins = report_html.display_bins(buckets)
    assert len(bins) <= report_html.MAX_BARS
    assert sum(n for _, _, n in bins) == rec.count
    assert [low for low, _, _ in bins] == sorted(low for low, _, _ in bins)
    svg = report_html.histogram_svg(rec.latency.to_dict())
    assert parsed(svg).count("rect", "latency-histogram", "bar") == len(bins)


def test_cold_violation_is_reported() -> None:
    doc = known_doc()
    doc["cold_check"] = {"expected": "cold", "cold": 3, "warm": 2, "ok": False}
    assert "COLD MODE VIOLATED" in summary.render(doc)
    assert "Cold mode violated" in report_html.render(doc)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """A real browser opens the page with no network; CI (which installs chromium) never skips."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {CHROMIUM} is missing: make test installs it")
        pytest.skip(f"no {CHROMIUM}")
    page = tmp_path / "report.html"
    page.write_text(report_html.render(known_doc()))
    profile = tmp_path / "profile"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    shutil.rmtree(profile, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    dom = parsed(done.stdout)
    assert dom.count("rect", "latency-histogram", "bar") == 3
    assert dom.count("circle", "latency-over-time", "p50") == 3
