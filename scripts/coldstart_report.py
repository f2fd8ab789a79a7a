"""Markdown tables for scripts/bench-coldstart's results (medians, in ms)."""

from __future__ import annotations

from typing import Any

from coldstart_sandbox import share


def _find(result: dict[str, Any], **wanted: Any) -> dict[str, Any] | None:
    for case in result["cases"]:
        if all(case[key] == value for key, value in wanted.items()):
            return dict(case)
    return None


def _ms(value: float) -> str:
    return f"{value:,.0f}"


def _split(case: dict[str, Any] | None) -> str:
    if case is None:
        return "-"
    return f"{_ms(case['init'])} + {_ms(case['first'])} = **{_ms(case['sum'])}**"


def _ratio(case: dict[str, Any] | None, base: dict[str, Any] | None, field: str = "sum") -> str:
    if case is None or base is None or not base[field]:
        return ""
    return f" ({case[field] / base[field]:.2f}x)"


def _sizes(result: dict[str, Any]) -> list[int]:
    return sorted({case["memory"] for case in result["cases"]})


def _models(result: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(case["model"] for case in result["cases"]))


def _layers(result: dict[str, Any]) -> list[str]:
    return list(result["layers"])


def _picks(result: dict[str, Any], memory: int) -> str:
    return "wait" if result["auto_waits"][str(memory)] else "early"


def felt(result: dict[str, Any], model: str) -> list[str]:
    layers = _layers(result)
    lines = [f"INIT + first invoke reading three values, `{model}` model (ms; ratio to boto3 in "
             "the function)", "",
             "| memory (vCPU after INIT) | boto3 in the function, no extension | "
             + " | ".join(f"{layer} (default policy)" for layer in layers) + " |",
             "|---|---|" + "---|" * len(layers)]
    for memory in _sizes(result):
        base = _find(result, model=model, memory=memory, layer="none", reads=True)
        cells = []
        for layer in layers:
            case = _find(result, model=model, memory=memory, layer=layer, reads=True, mode="auto")
            cells.append(f"{_split(case)}{_ratio(case, base)} ({_picks(result, memory)})")
        lines.append(f"| {memory} MB ({share(memory):.2f}) | {_split(base)} | "
                     + " | ".join(cells) + " |")
    return lines


def policy(result: dict[str, Any], model: str) -> list[str]:
    layers = _layers(result)
    lines = [f"INIT + first invoke with each INIT choice, `{model}` model (ms): `early` ends INIT "
             "at register, `wait` once serving and prefetched; **bold**: what `auto` picks", "",
             "| memory | function | " + " | ".join(
                 f"{layer} early | {layer} wait" for layer in layers)
             + " |", "|---|---|" + "---|---|" * len(layers)]
    for memory in _sizes(result):
        for reads in (True, False):
            cells = []
            for layer in layers:
                for mode in ("early", "wait"):
                    case = _find(result, model=model, memory=memory, layer=layer, reads=reads,
                                 mode=mode if mode != _picks(result, memory) else "auto")
                    text = "-" if case is None else _ms(case["sum"])
                    cells.append(f"**{text}**" if mode == _picks(result, memory) else text)
            what = "reads three values" if reads else "reads nothing"
            lines.append(f"| {memory} MB | {what} | " + " | ".join(cells) + " |")
    return lines


def nothing(result: dict[str, Any], model: str) -> list[str]:
    layers = _layers(result)
    lines = [f"A function that reads nothing on its first invoke (standard library only), "
             f"`{model}` model (ms): INIT + first invoke, and the INIT the extension adds "
             "(default policy)", "",
             "| memory | no extension | " + " | ".join(
                 f"{layer} | INIT added" for layer in layers) + " |",
             "|---|---|" + "---|---|" * len(layers)]
    for memory in _sizes(result):
        base = _find(result, model=model, memory=memory, layer="none", reads=False)
        cells = []
        for layer in layers:
            case = _find(result, model=model, memory=memory, layer=layer, reads=False,
                         mode="auto")
            added = "-" if case is None or base is None else _ms(case["init"] - base["init"])
            cells += [_split(case), added]
        lines.append(f"| {memory} MB | {_split(base)} | " + " | ".join(cells) + " |")
    return lines


def warm(result: dict[str, Any], model: str) -> list[str]:
    layers = _layers(result)
    lines = [f"Warm invokes reading the same three values, `{model}` model (ms, median of "
             "five invokes a run)", "",
             "| memory | boto3 in the function | " + " | ".join(
                 layers) + " |",
             "|---|---|" + "---|" * len(layers)]
    for memory in _sizes(result):
        base = _find(result, model=model, memory=memory, layer="none", reads=True)
        cells = []
        for layer in layers:
            case = _find(result, model=model, memory=memory, layer=layer, reads=True, mode="auto")
            if case is None or base is None:
                cells.append("-")
            else:
                cells.append(f"{case['warm']:.1f} ({base['warm'] / case['warm']:.1f}x faster)")
        base_text = "-" if base is None else f"{base['warm']:.1f}"
        lines.append(f"| {memory} MB | {base_text} | " + " | ".join(cells) + " |")
    return lines


def startup(result: dict[str, Any]) -> list[str]:
    cpu = result["startup_cpu"]
    lines = ["Start-up CPU, unthrottled (ms of user + system CPU from exec, `/proc/<pid>/stat`)",
             "", "| measure | " + " | ".join(cpu) + " |",
             "|---|" + "---|" * len(cpu)]
    rows = [("exec → register (wall)", "register_wall"), ("exec → register", "register"),
            ("exec → serving (wall)", "serving_wall"), ("exec → serving", "serving"),
            ("exec → first value fetched", "first_value"),
            ("`--version` (entry point, argparse, exit; `wait4`)", "version"),
            ("Python alone (`python -s -c pass`)", "python_alone"),
            ("importing the libraries alone", "libraries")]
    for label, key in rows:
        lines.append(f"| {label} | " + " | ".join(
            _ms(cpu[layer][key]) if key in cpu[layer] else "-" for layer in cpu) + " |")
    python = cpu.get("Python layer")
    if python and python.get("libraries"):
        gap = python["serving"] / python["libraries"] - 1
        lines.append(f"| **gap: serving over the libraries' import** | {gap:+.0%} |"
                     + " |" * (len(cpu) - 1))
        loader = [f"{cpu[label]['version'] - python['version']:+,.0f}"
                  if label != "Python layer" and "version" in python else "" for label in cpu]
        if any(loader):
            lines.append("| **the binary's loader before Python runs** (`--version`, binary "
                         "less Python layer) | " + " | ".join(loader) + " |")
    return lines


def tables(result: dict[str, Any]) -> str:
    out = [f"bench-coldstart: Python {result['python']} (binary: its own), medians of "
           f"{result['runs']}, CPU model: {result['cpu_model']}"
           + (f", sandbox and fake AWS weighed as {result['priority']} processes each"
              if result.get("priority") else "")]
    if result["cpu_note"]:
        out.append(f"note: {result['cpu_note']}")
    for model in _models(result):
        for block in (felt, policy, nothing, warm):
            out += ["", *block(result, model)]
    out += ["", *startup(result)]
    appconfig = result.get("appconfig")
    if isinstance(appconfig, dict):
        import coldstart_appconfig

        out += ["", "INIT, exec to serving and memory with the AppConfig port (a 512 MB "
                "function: INIT waits for the start-up; medians)", "",
                coldstart_appconfig.table(appconfig)]
    elif appconfig:
        out += ["", f"AppConfig port: {appconfig}"]
    wrapper = result.get("wrapper")
    if isinstance(wrapper, dict):
        import coldstart_wrapper

        out += ["", "INIT with the exec wrapper (AWS_LAMBDA_EXEC_WRAPPER), a trivial runtime, "
                "INIT unthrottled; medians", "", coldstart_wrapper.table(wrapper)]
    elif wrapper:
        out += ["", f"Exec wrapper: {wrapper}"]
    return "\n".join(out)
