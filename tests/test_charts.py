"""scripts/charts on the committed benchmark runs under tests/fixtures/bench
(real runs: q-new-3, the referee's a and d for the hub and rust-naive;
i15-memory, scenario c for the hub, ws-node and socket.io): every SVG
parses, names its run, and carries the numbers the JSON holds, computed
here from the JSON independently of the script.

    python3 tests/test_charts.py
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHARTS = os.path.join(ROOT, "scripts", "charts")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "bench")
NS = "{http://www.w3.org/2000/svg}"


def charts(*args):
    return subprocess.run([sys.executable, CHARTS, "--runs", FIXTURES, *args],
                          capture_output=True, text=True, timeout=60)


def texts(path):
    """Every <text>, <title> and <desc> of an SVG, after parsing it."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{NS}svg", root.tag
    return [e.text or "" for e in root.iter() if e.tag in (f"{NS}text", f"{NS}title", f"{NS}desc")]


def us_per_delivery(file):
    """Server CPU over all rounds / all deliveries, as the figure says it."""
    with open(file) as f:
        rounds = json.load(f)["rounds"]
    return sum(r["server_cpu_s"] for r in rounds) * 1e6 / sum(r["delivered"] for r in rounds)


class ChartsFromFixtures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="cbx-charts-")
        cls.drawn = charts("--out", cls.out)
        assert cls.drawn.returncode == 0, cls.drawn.stderr

    def test_three_figures_parse_as_svg_with_a_text_alternative(self):
        names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(self.out, "*.svg")))
        self.assertEqual(names, ["cost.svg", "memory.svg", "peers.svg"])
        for name in names:
            root = ET.parse(os.path.join(self.out, name)).getroot()
            self.assertEqual(root.get("role"), "img")
            desc = root.find(f"{NS}desc").text
            self.assertTrue(desc and "channelbox hub" in desc, (name, desc))

    def test_peers_figure_carries_each_peers_cpu_per_delivery(self):
        words = " ".join(texts(os.path.join(self.out, "peers.svg")))
        self.assertIn("run q-new-3", words)
        for peer in ("custom", "rust-naive"):
            for sc in ("a", "d"):
                value = us_per_delivery(os.path.join(FIXTURES, "q-new-3", "peers", f"{peer}.{sc}.json"))
                self.assertIn(f"{value:.3f} µs", words, (peer, sc))

    def test_cost_figure_adds_up_server_and_load_generator(self):
        words = " ".join(texts(os.path.join(self.out, "cost.svg")))
        with open(os.path.join(FIXTURES, "q-new-3", "peers", "custom.a.json")) as f:
            rounds = json.load(f)["rounds"]
        delivered = sum(r["delivered"] for r in rounds)
        server = sum(r["server_cpu_s"] for r in rounds) * 1e6 / delivered
        loadgen = sum(r["loadgen_cpu_s"] for r in rounds) * 1e6 / delivered
        self.assertIn(f"{server + loadgen:.3f} µs", words)
        self.assertIn(f"+ {loadgen:.3f})", words)

    def test_memory_figure_carries_bytes_per_idle_connection(self):
        words = " ".join(texts(os.path.join(self.out, "memory.svg")))
        self.assertIn("run i15-memory", words)
        for file in glob.glob(os.path.join(FIXTURES, "i15-memory", "peers", "*.c.json")):
            with open(file) as f:
                per = json.load(f)["server_rss_bytes_per_conn"]
            self.assertIn(f"{per:,.0f} B", words, file)

    def test_an_unknown_label_is_refused(self):
        run = charts("--out", self.out, "--label", "no-such-run")
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("no run labelled 'no-such-run'", run.stderr)

    def test_the_committed_figures_are_the_fixture_runs_drawn_again(self):
        # docs/charts is drawn from these very runs (BENCHMARKS.md, "Charts").
        out = tempfile.mkdtemp(prefix="cbx-charts-")
        self.assertEqual(charts("--out", out, "--label", "q-new-3", "--memory-label", "i15-memory").returncode, 0)
        for name in ("peers.svg", "cost.svg", "memory.svg"):
            with open(os.path.join(out, name)) as a, open(os.path.join(ROOT, "docs", "charts", name)) as b:
                self.assertEqual(a.read(), b.read(), f"docs/charts/{name} is stale: run the command in BENCHMARKS.md")


if __name__ == "__main__":
    unittest.main()
