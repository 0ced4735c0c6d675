"""The HTML report in a real browser: real profiles, rendered, opened offline in Chromium.

Every assertion reads the rendered DOM (what a person sees), never the HTML
source, and compares it with the Profile's own figures formatted as
reports/units.py formats them.  Each page is opened with the network cut
off and every request recorded; a console error, a page error or a request
fails the test.  Screenshots land under the test's tmp directory (the path
is printed with -s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import Browser, Visit
from browser import unavailable_reason as browser_unavailable
from collector_guard import unavailable_reason

from profiler.model import Budget, Profile
from reports.html import SYSTEM_PARTS, HtmlRenderer
from reports.html_flame import distinct_frames, top_stacks
from reports.text import BUDGET_LABELS
from reports.units import fmt_count, fmt_ns, fmt_pct

STPROF = [sys.executable, "-m", "stprof"]
DD = ["dd", "if=/dev/zero", "of=/dev/null", "bs=10M", "count=1"]
PAGE_LIMIT = 1_500_000  # bytes: the make-demo page must stay under 1.5 MB
DTRACE_FIXTURES = Path(__file__).parent / "fixtures" / "dtrace"


def stprof(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STPROF, *args], capture_output=True, text=True, timeout=180,
                          check=False, env=env)


def need_collector(name: str) -> None:
    reason = unavailable_reason(name)
    if reason:
        pytest.skip(f"{name} collector unavailable here: {reason}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    reason = browser_unavailable()
    if reason:
        pytest.skip(f"no headless browser: {reason}")
    with Browser() as opened:
        yield opened


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("html-screenshots")
    print(f"\nscreenshots: {where}")
    return where


class Run:
    """One real `stprof run --json --html` of a command: the profile and its page."""

    def __init__(self, where: Path, collector: str, extra: list[str],
                 command: list[str], env: dict[str, str] | None = None) -> None:
        self.json = where / f"{collector}.json"
        self.html = where / f"{collector}.html"
        done = stprof("run", "-c", collector, *extra, "--json", str(self.json),
                      "--html", str(self.html), "--", *command, env=env)
        assert done.returncode == 0, done.stderr
        self.profile = Profile.load(self.json)


@pytest.fixture(scope="module")
def ebpf_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    need_collector("ebpf")
    return Run(tmp_path_factory.mktemp("ebpf"), "ebpf", ["-F", "4999"], DD)


@pytest.fixture(scope="module")
def ptrace_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    need_collector("ptrace")
    return Run(tmp_path_factory.mktemp("ptrace"), "ptrace", [], DD)


def dtrace_profile() -> Profile:
    """The DTrace fixture of the lecture's dd, parsed as the collector parses it."""
    from collectors.dtrace_output import fill_profile, parse_output
    from collectors.dtrace_program import FAULT_PROBES, ProgramSpec

    spec = ProgramSpec(stacks="faults", trap_function="trap", fault_probe=FAULT_PROBES[0],
                       output="text")
    records = parse_output((DTRACE_FIXTURES / "text-dd.out").read_text(), "text")
    profile = fill_profile(Profile(collector="dtrace", command=["dd", "if=/dev/zero",
                                                                "of=/dev/null", "bs=10m",
                                                                "count=1"]),
                           records, spec, "", errno_name=lambda n: f"E{n}")
    assert profile.budget is None and profile.irqs is None and profile.stacks is not None
    return profile


@pytest.fixture(scope="module")
def dtrace_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Profile, Path]:
    profile = dtrace_profile()
    path = tmp_path_factory.mktemp("dtrace") / "dtrace.html"
    path.write_text(HtmlRenderer().render(profile), encoding="utf-8")
    return profile, path


# ------------------------------------------------------------ DOM readers
def texts(visit: Visit, selector: str) -> list[str]:
    found: list[str] = visit.page.locator(selector).all_inner_texts()
    return [text.strip() for text in found]


def attributes(visit: Visit, selector: str, name: str) -> list[str]:
    found: list[str] = visit.page.eval_on_selector_all(
        selector, "(nodes, name) => nodes.map(n => n.getAttribute(name))", name)
    return found


def row_names(visit: Visit) -> list[str]:
    return attributes(visit, "#syscall-table tbody tr", "data-syscall")


def cell(visit: Visit, syscall: str, key: str) -> str:
    text: str = visit.page.locator(
        f'#syscall-table tr[data-syscall="{syscall}"] td[data-key="{key}"]').inner_text()
    return text.strip()


def assert_clean(visit: Visit) -> None:
    assert visit.problems() == []


def visible_sections_have_content(visit: Visit) -> None:
    """No blank box: every section shows text, every chart host was drawn."""
    for section in attributes(visit, "main section", "id"):
        text = visit.page.locator(f"#{section}").inner_text()
        heading = visit.page.locator(f"#{section} h2").inner_text()
        assert len(text.strip()) > len(heading.strip()) + 10, section
    hosts = visit.page.locator(".uplot-host").count()
    assert visit.page.locator(".uplot-host canvas").count() == hosts


def test_the_browser_helper_sees_requests_and_errors(browser: Browser, tmp_path: Path) -> None:
    """The checks below would catch a page that fetches or fails: this one does both."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://192.0.2.1/x.png">'
                    '<script>fetch("https://192.0.2.1/a").catch(() => {});'
                    "undefinedFunction();</script></body></html>")
    with browser.open(page) as visit:
        visit.page.wait_for_timeout(300)
        assert set(visit.blocked) == {"http://192.0.2.1/x.png", "https://192.0.2.1/a"}
        assert any("undefinedFunction" in error for error in visit.page_errors)
        assert visit.console_errors


# ------------------------------------------------------------ eBPF: the demo
def test_the_demo_page_is_small_and_self_contained(ebpf_run: Run, browser: Browser,
                                                   shots: Path) -> None:
    assert ebpf_run.html.stat().st_size < PAGE_LIMIT
    with browser.open(ebpf_run.html) as visit:
        visit.screenshot(shots / "ebpf-dd.png")
        scripts = attributes(visit, "script[src]", "src")
        styles = attributes(visit, "link[rel=stylesheet]", "href")
        assert scripts == [] and styles == []
        visible_sections_have_content(visit)
        assert_clean(visit)


def test_budget_bar_shows_the_profiles_budget(ebpf_run: Run, browser: Browser) -> None:
    budget = ebpf_run.profile.budget
    assert budget is not None
    parts = budget.parts()
    with browser.open(ebpf_run.html) as visit:
        drawn = attributes(visit, "#budget-bar .bar .part", "data-part")
        assert drawn == [name for name in Budget.PARTS if parts[name] > 0]
        for name in drawn:
            box = f'#budget-bar .bar .part[data-part="{name}"]'
            label = BUDGET_LABELS[name]
            value, share = fmt_ns(parts[name]), fmt_pct(parts[name], budget.lifetime_ns)
            assert attributes(visit, box, "title") == [f"{label}: {value}, {share}"]
            # a box too narrow for its label hides its name, then its figures (the
            # legend below has them all)
            shown = texts(visit, f"{box} .part-label")[0]
            assert shown in (f"{label}\n{value} {share}", f"{value} {share}", "")
        largest = max(parts, key=lambda n: parts[n])  # at least an eighth: room for figures
        assert texts(visit, f'#budget-bar .part[data-part="{largest}"] .part-label')[0].endswith(
            f"{fmt_ns(parts[largest])} {fmt_pct(parts[largest], budget.lifetime_ns)}")
        legend = list(zip(texts(visit, "#budget-bar .legend .legend-name"),
                          texts(visit, "#budget-bar .legend .legend-value"),
                          texts(visit, "#budget-bar .legend .legend-share")))
        assert legend == [(BUDGET_LABELS[n], fmt_ns(v), fmt_pct(v, budget.lifetime_ns))
                          for n, v in parts.items()]
        # each box is as wide as its share of the lifetime
        whole = visit.page.locator("#budget-bar .bar").bounding_box()["width"] - 2  # border
        width = visit.page.locator(f'#budget-bar .part[data-part="{largest}"]').bounding_box()
        assert width["width"] == pytest.approx(whole * parts[largest] / budget.lifetime_ns,
                                               abs=1.5)
        assert_clean(visit)


def test_the_demo_says_dd_time_went_to_faults_inside_read(ebpf_run: Run,
                                                          browser: Browser) -> None:
    """The issue's done criterion: seen without reading a number."""
    budget = ebpf_run.profile.budget
    assert budget is not None
    system = {name: getattr(budget, name) for name in SYSTEM_PARTS}
    kernel = sum(system.values())
    assert max(system, key=lambda n: system[n]) == "fault_in_syscall_ns"
    with browser.open(ebpf_run.html) as visit:
        share = fmt_pct(budget.fault_in_syscall_ns, kernel)
        assert texts(visit, "#headline") == [
            f"Most of dd's system time went to page faults inside read ({share} of it)."]
        boxes = {name: visit.page.locator(f'#system-bar .part[data-part="{name}"]')
                 .bounding_box()["width"] for name in
                 attributes(visit, "#system-bar .bar .part", "data-part")}
        assert max(boxes, key=lambda n: boxes[n]) == "fault_in_syscall_ns"
        legend = list(zip(texts(visit, "#system-bar .legend .legend-name"),
                          texts(visit, "#system-bar .legend .legend-value"),
                          texts(visit, "#system-bar .legend .legend-share")))
        assert legend == [(BUDGET_LABELS[n], fmt_ns(v), fmt_pct(v, kernel))
                          for n, v in system.items()]
        faults_inside = texts(visit, "#faults-inside tbody td.name")
        assert faults_inside[0] == "read"
        assert_clean(visit)


def test_syscall_table_rows_equal_the_profiles_syscalls(ebpf_run: Run,
                                                        browser: Browser) -> None:
    syscalls = ebpf_run.profile.syscalls
    with browser.open(ebpf_run.html) as visit:
        assert sorted(row_names(visit)) == sorted(syscalls)
        for name, stats in syscalls.items():
            assert cell(visit, name, "calls") == fmt_count(stats.calls)
            assert cell(visit, name, "total") == fmt_ns(stats.total_ns)
            assert cell(visit, name, "max") == fmt_ns(stats.max_ns)
            assert cell(visit, name, "faults") == (fmt_count(stats.faults) if stats.faults
                                                   else "")
            errors = cell(visit, name, "errors")
            for errno, count in stats.errnos.items():
                assert f"{errno} x{count}" in errors
            bars = visit.page.locator(f'#syscall-table tr[data-syscall="{name}"] '
                                      "svg.spark rect:not(.spark-base)").count()
            assert bars == sum(1 for count in stats.hist if count)
        assert_clean(visit)


def test_clicking_a_header_reorders_the_rows(ebpf_run: Run, browser: Browser) -> None:
    syscalls = ebpf_run.profile.syscalls
    by_time = sorted(syscalls, key=lambda n: (-syscalls[n].total_ns, n))
    by_calls = sorted(syscalls, key=lambda n: (-syscalls[n].calls, n))
    assert by_time != by_calls
    with browser.open(ebpf_run.html) as visit:
        assert row_names(visit) == by_time
        visit.page.click('#syscall-table th[data-key="calls"] button')
        assert row_names(visit) == by_calls
        visit.page.click('#syscall-table th[data-key="calls"] button')
        assert row_names(visit) == sorted(syscalls, key=lambda n: (syscalls[n].calls, n))
        visit.page.click('#syscall-table th[data-key="name"] button')
        assert row_names(visit) == sorted(syscalls)
        assert_clean(visit)


def test_flame_graph_has_a_box_per_frame_and_zooms(ebpf_run: Run, browser: Browser) -> None:
    stacks = ebpf_run.profile.stacks
    assert stacks is not None and stacks.samples > 0
    shown = top_stacks(stacks)
    paths = distinct_frames(shown)
    rest = 1 if len(shown) < len(stacks.folded) else 0
    with browser.open(ebpf_run.html) as visit:
        frames = visit.page.locator("#flame g.frame")
        assert frames.count() == 1 + len(paths) + rest
        names = [name for name in attributes(visit, "#flame g.frame", "data-name")[1:]
                 if not name.startswith("(")]
        assert sorted(names) == sorted(path[-1] for path in paths)
        # zoom on the first frame of the most sampled stack that holds fewer than all samples
        top_path = tuple(shown[0][0].split(";"))
        sampled = {path: sum(n for stack, n in shown
                             if tuple(stack.split(";"))[:len(path)] == path) for path in paths}
        depth = next(d for d in range(1, len(top_path) + 1)
                     if sampled[top_path[:d]] < stacks.samples)
        target, prefix = top_path[depth - 1], top_path[:depth]
        box = visit.page.locator(f'#flame g.frame[data-depth="{depth}"]'
                                 f'[data-name="{target}"]').first
        samples = int(box.get_attribute("data-samples") or 0)
        assert samples == sampled[prefix]
        box.locator("rect").click()
        assert visit.page.locator("#flame").get_attribute("data-zoom") == target
        assert box.locator("rect").get_attribute("width") == "100%"
        svg_width = visit.page.locator("#flame").bounding_box()["width"]
        assert box.locator("rect").bounding_box()["width"] == pytest.approx(svg_width, abs=2)
        # shown: the frame's ancestors (dimmed, full width) and its subtree; hidden: the rest
        subtree = [path for path in paths if path[:depth] == prefix]
        assert visit.page.locator("#flame g.frame.dim").count() == depth
        assert visit.page.locator("#flame g.frame:not(.hidden):not(.dim)").count() == len(
            subtree)
        assert visit.page.locator("#flame g.frame.hidden").count() > 0
        # hover says the samples and share
        box.hover()
        assert texts(visit, "#flame-detail") == [
            f"{target}: {fmt_count(samples)} samples, {fmt_pct(samples, stacks.samples)} of all"]
        # the root zooms out
        visit.page.locator('#flame g.frame[data-depth="0"] rect').click()
        assert visit.page.locator("#flame g.frame.hidden").count() == 0
        assert_clean(visit)


def test_flame_graph_search_counts_matching_samples(ebpf_run: Run, browser: Browser) -> None:
    stacks = ebpf_run.profile.stacks
    assert stacks is not None
    leaf = stacks.top_functions(1)[0][0]
    expected = stacks.inclusive()[leaf]
    with browser.open(ebpf_run.html) as visit:
        visit.page.fill("#flame-search", leaf)
        assert visit.page.locator("#flame g.frame.match").count() >= 1
        assert texts(visit, "#flame-match") == [
            f"{fmt_count(expected)} samples match ({fmt_pct(expected, stacks.samples)})"]
        assert_clean(visit)


def test_faults_processes_interrupts_and_notes(ebpf_run: Run, browser: Browser) -> None:
    profile = ebpf_run.profile
    faults, irqs = profile.faults, profile.irqs
    assert irqs is not None
    with browser.open(ebpf_run.html) as visit:
        place = {p: texts(visit, f'#fault-place .legend li[data-part="{p}"] .legend-value')
                 for p in ("user", "in_syscall")}
        assert place == {"user": [fmt_count(faults.user)],
                         "in_syscall": [fmt_count(faults.in_syscall)]}
        assert visit.page.locator("#fault-hist canvas").count() >= 1
        rows = [row.split("\t") for row in texts(visit, "#process-table tbody tr")]
        assert [(r[0], r[2]) for r in rows] == [(str(p.pid), p.comm) for p in profile.processes]
        kinds = texts(visit, "#irq-table tbody td.name")
        assert sorted(kinds) == sorted(irqs.by_kind)
        assert texts(visit, "#notes li") == profile.notes
        assert_clean(visit)


def test_the_page_embeds_the_profile_and_saves_it(ebpf_run: Run, browser: Browser,
                                                  tmp_path: Path) -> None:
    with browser.open(ebpf_run.html) as visit:
        embedded = visit.page.evaluate(
            "JSON.parse(document.getElementById('profile-data').textContent)")
        assert embedded == ebpf_run.profile.to_dict()
        with visit.page.expect_download() as download:
            visit.page.click("#save-json")
        saved = tmp_path / "saved.json"
        download.value.save_as(saved)
        assert Profile.load(saved).to_dict() == ebpf_run.profile.to_dict()
        assert download.value.suggested_filename == "stprof-dd.json"
        assert_clean(visit)


def test_narrow_window_and_print(ebpf_run: Run, browser: Browser, shots: Path) -> None:
    with browser.open(ebpf_run.html, width=400) as visit:
        visit.screenshot(shots / "ebpf-dd-narrow.png")
        overflow = visit.page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 400
        assert_clean(visit)
    with browser.open(ebpf_run.html, media="print") as visit:
        visit.screenshot(shots / "ebpf-dd-print.png")
        assert visit.page.locator("#save-json").is_hidden()
        assert visit.page.locator("#fault-hist table.print-only").is_visible()
        assert_clean(visit)


def test_report_renders_the_same_page_from_the_json(ebpf_run: Run, tmp_path: Path) -> None:
    by_format = tmp_path / "by-format.html"
    done = stprof("report", "--format", "html", str(ebpf_run.json), "-o", str(by_format))
    assert done.returncode == 0, done.stderr
    assert by_format.read_bytes() == ebpf_run.html.read_bytes()
    by_option = tmp_path / "by-option.html"
    done = stprof("report", "--html", str(by_option), str(ebpf_run.json))
    assert done.returncode == 0 and done.stdout.startswith("stprof: dd")
    assert by_option.read_bytes() == ebpf_run.html.read_bytes()


# --------------------------------------------------- no budget, stacks, irqs
def test_ptrace_page_says_what_it_cannot_measure(ptrace_run: Run, browser: Browser,
                                                 shots: Path) -> None:
    profile = ptrace_run.profile
    assert profile.budget is None and profile.stacks is None and profile.irqs is None
    syscall_ns, sys_ns = profile.total_syscall_ns, profile.rusage.sys_ns
    with browser.open(ptrace_run.html) as visit:
        visit.screenshot(shots / "ptrace-dd.png")
        assert "ptrace" in texts(visit, "#budget-missing")[0]
        assert "ptrace cannot sample kernel stacks" in texts(visit, "#stacks-missing")[0]
        assert "ptrace cannot see interrupts" in texts(visit, "#irqs-missing")[0]
        assert texts(visit, '#budget-bar .part[data-part="syscall_ns"] .part-value') == [
            fmt_ns(syscall_ns)]
        if sys_ns > syscall_ns:
            assert texts(visit, '#budget-bar .legend li[data-part="rest_sys_ns"] '
                                '.legend-value') == [fmt_ns(sys_ns - syscall_ns)]
        assert sorted(row_names(visit)) == sorted(profile.syscalls)
        for name, stats in profile.syscalls.items():
            assert cell(visit, name, "calls") == fmt_count(stats.calls)
        visible_sections_have_content(visit)
        assert_clean(visit)


def test_dtrace_fixture_page_shows_the_lectures_split(dtrace_page: tuple[Profile, Path],
                                                      browser: Browser, shots: Path) -> None:
    profile, path = dtrace_page
    timing = profile.timing
    with browser.open(path) as visit:
        visit.screenshot(shots / "dtrace-dd.png")
        values = {part: texts(visit, f'#budget-bar .legend li[data-part="{part}"] '
                                     ".legend-value")
                  for part in ("syscall_own_ns", "trap_in_syscall_ns", "trap_user_ns")}
        assert values == {
            "syscall_own_ns": [fmt_ns(profile.total_syscall_ns - timing["trap_in_syscall_ns"])],
            "trap_in_syscall_ns": [fmt_ns(timing["trap_in_syscall_ns"])],
            "trap_user_ns": [fmt_ns(timing["trap_user_ns"])],
        }
        assert "DTrace" in texts(visit, "#budget-missing")[0]
        assert "does not trace interrupts" in texts(visit, "#irqs-missing")[0]
        assert visit.page.locator("#flame g.frame").count() == 1 + len(
            distinct_frames(top_stacks(profile.stacks)))  # type: ignore[arg-type]
        visible_sections_have_content(visit)
        assert_clean(visit)


# ------------------------------------------------------------ compare
def run_json(where: Path, name: str, blocks: int, collector: str = "ebpf") -> Path:
    """A real profile of one shell line whose dd reads $BLOCKS blocks."""
    path = where / f"{name}.json"
    env = {**os.environ, "BLOCKS": str(blocks)}
    done = stprof("run", "-c", collector, "--kernel-stacks", "off", "--json", str(path), "--",
                  "sh", "-c", 'dd if=/dev/zero of=/dev/null bs=64k count="$BLOCKS" 2>/dev/null',
                  env=env)
    assert done.returncode == 0, done.stderr
    return path


def test_compare_html_shows_the_verdict_and_the_same_numbers(
        tmp_path: Path, browser: Browser, shots: Path) -> None:
    need_collector("ebpf")
    base, new = run_json(tmp_path, "base", 10), run_json(tmp_path, "new", 200)
    page = tmp_path / "compare.html"
    done = stprof("compare", str(base), str(new), "--html", str(page))
    assert done.returncode == 1, done.stderr
    comparison_lines = done.stdout.splitlines()
    with browser.open(page) as visit:
        visit.screenshot(shots / "compare-regression.png")
        assert attributes(visit, "#verdict-banner", "data-state") == ["regression"]
        assert texts(visit, "#verdict-banner")[0].startswith(
            comparison_lines[0].removeprefix("stprof: ").split(";")[0])
        assert texts(visit, "#text-view")[0] == done.stdout.rstrip("\n")
        rows = texts(visit, "#verdict-rows tbody tr")
        assert len(rows) == len([line for line in comparison_lines[1:]
                                 if not line.startswith("  note:")])
        assert "read.calls" in " ".join(rows)
        assert visit.page.locator("#budget-baseline .bar .part").count() > 0
        assert visit.page.locator("#budget-current .bar .part").count() > 0
        read_calls = visit.page.locator(
            '#syscall-deltas tr[data-syscall="read"] td[data-verdict]').first
        assert read_calls.get_attribute("data-verdict") == "regression"
        with visit.page.expect_download() as download:
            visit.page.click("#save-json")
        saved = tmp_path / "saved.json"
        download.value.save_as(saved)
        data = json.loads(saved.read_text())
        assert data["schema"] == "stprof-comparison/1" and data["exit_status"] == 1
        assert_clean(visit)


def test_compare_html_of_different_commands_warns_in_the_page(
        ptrace_run: Run, tmp_path: Path, browser: Browser, shots: Path) -> None:
    other = tmp_path / "true.json"
    done = stprof("run", "-c", "ptrace", "--json", str(other), "--", "true")
    assert done.returncode == 0, done.stderr
    page = tmp_path / "refused.html"
    done = stprof("compare", str(ptrace_run.json), str(other), "--html", str(page))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("stprof: ") and "another command" in line
    with browser.open(page) as visit:
        visit.screenshot(shots / "compare-refused.png")
        assert attributes(visit, "#verdict-banner", "data-state") == ["refused"]
        banner = texts(visit, "#verdict-banner")[0]
        assert line.removeprefix("stprof: ") in banner.replace("\n", " ")
        assert texts(visit, "#text-view") == [line]
        assert visit.page.locator("#verdict-rows").count() == 0
        assert "ptrace" in texts(visit, "#budgets-missing")[0]
        assert_clean(visit)


def test_compare_still_refuses_a_foreign_file(ptrace_run: Run, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"schema": "stprof/9", "runs": []}))
    done = stprof("compare", str(ptrace_run.json), str(foreign), "--html",
                  str(tmp_path / "x.html"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "unsupported record schema" in done.stderr
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("where", ["directory", "missing-directory"])
def test_unwritable_html_is_refused_before_the_command_runs(tmp_path: Path,
                                                            where: str) -> None:
    target = tmp_path if where == "directory" else tmp_path / "nope" / "x.html"
    marker = tmp_path / "ran"
    done = stprof("run", "-c", "ptrace", "--html", str(target), "--", "touch", str(marker))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert not marker.exists()



def test_check_writes_its_comparison_page(tmp_path: Path, browser: Browser) -> None:
    need_collector("ptrace")
    baseline, page = tmp_path / "baseline.json", tmp_path / "check.html"
    done = stprof("record", "-c", "ptrace", "--repeat", "2", "--warmup", "0", "-o",
                  str(baseline), "--", "true")
    assert done.returncode == 0, done.stderr
    done = stprof("check", "--baseline", str(baseline), "--html", str(page))
    assert done.returncode == 0, done.stderr
    with browser.open(page) as visit:
        assert attributes(visit, "#verdict-banner", "data-state") == ["ok"]
        assert texts(visit, "#text-view")[0] == done.stdout.rstrip("\n")
        assert_clean(visit)


def test_text_from_the_profile_cannot_break_out_of_the_page(dtrace_page: tuple[Profile, Path],
                                                            browser: Browser,
                                                            tmp_path: Path) -> None:
    """A command line, a note or a syscall name is shown as text, never run as markup."""
    profile, _ = dtrace_page
    hostile = "</script><script>window.hacked = 1</script><b>&amp;"
    profile = Profile.from_dict({**profile.to_dict(), "command": ["sh", "-c", hostile],
                                 "notes": [hostile]})
    profile.syscalls[hostile] = profile.syscalls["read"]
    path = tmp_path / "hostile.html"
    path.write_text(HtmlRenderer().render(profile), encoding="utf-8")
    with browser.open(path) as visit:
        assert visit.page.evaluate("window.hacked") is None
        assert texts(visit, "h1 code") == [f"sh -c '{hostile}'"]
        assert texts(visit, "#notes li") == [hostile]
        assert hostile in row_names(visit)
        assert visit.page.evaluate(
            "JSON.parse(document.getElementById('profile-data').textContent)"
        ) == profile.to_dict()
        assert_clean(visit)
