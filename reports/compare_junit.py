"""The comparison as JUnit XML: each metric and each budget a testcase."""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET

from profiler.compare import BudgetResult, Comparison, ComparisonRenderer, Result, Verdict
from reports.compare_text import fmt_budget_value, fmt_change, fmt_evidence, fmt_values, sides


class CompareJunitRenderer(ComparisonRenderer):
    name = "junit"

    def render(self, comparison: Comparison) -> str:
        cases = [_result_case(r) for r in comparison.results]
        cases += [_budget_case(b) for b in comparison.budgets]
        failures = sum(1 for case in cases if case.find("failure") is not None)
        suites = ET.Element("testsuites", name="stprof", tests=str(len(cases)),
                            failures=str(failures), errors="0")
        suite = ET.SubElement(suites, "testsuite",
                              name=f"stprof check: {shlex.join(comparison.command)}",
                              tests=str(len(cases)), failures=str(failures), errors="0",
                              skipped="0")
        properties = ET.SubElement(suite, "properties")
        for name, value in (("baseline", comparison.baseline.source),
                            ("current", comparison.current.source),
                            ("collector", comparison.current.collector)):
            ET.SubElement(properties, "property", name=name, value=value)
        suite.extend(cases)
        ET.SubElement(suite, "system-out").text = "\n".join([sides(comparison),
                                                             *comparison.notes])
        ET.indent(suites)
        return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _result_case(result: Result) -> ET.Element:
    case = ET.Element("testcase", classname="stprof.metrics", name=result.metric, time="0")
    before, after = fmt_values(result)
    summary = f"{result.metric}: {before} -> {after} {fmt_change(result)}".rstrip()
    if result.verdict is Verdict.REGRESSION:
        failure = ET.SubElement(case, "failure", type="regression",
                                message=f"{summary}: {result.reason}")
        failure.text = fmt_evidence(result)
    else:
        ET.SubElement(case, "system-out").text = f"{summary} ({result.verdict.value}: " \
                                                 f"{fmt_evidence(result)})"
    return case


def _budget_case(budget: BudgetResult) -> ET.Element:
    case = ET.Element("testcase", classname="stprof.budgets", name=budget.text, time="0")
    value, limit = fmt_budget_value(budget)
    if not budget.passed:
        ET.SubElement(case, "failure", type="budget",
                      message=f"{budget.text}: median {value}, limit {limit}")
    else:
        note = f" ({budget.note})" if budget.note else ""
        ET.SubElement(case, "system-out").text = f"median {value}, limit {limit}{note}"
    return case
