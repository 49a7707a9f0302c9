"""docs/recipes: the index is complete, every python block parses (self-contained ones run
against a small random metric), the runnable examples train with a finite ASCCL term, and
what the recipes say matches the code: each recipe's declared adapter conventions equal the
registry's, no sentence contradicts them, every ``asccl ...`` command line parses, and the
python blocks call asccl's current names with arguments their signatures take."""

import ast
import builtins
import dataclasses
import inspect
import math
import pickle
import re
import runpy
import shlex
from pathlib import Path

import pytest
import torch

from asccl.cli import build_parser
from asccl.metric import ASCCLMetric, save_metric
from asccl.metric.config import MetricConfig
from asccl.spfem import ADAPTERS, ASCCLSupervision, get_adapter
from asccl.spfem.face3d import convert_flame, get_coefficient_adapter, load_flame
from asccl.spfem.face3d.adapters import COEFFICIENT_ADAPTERS
from asccl.spfem.face3d.synthetic import synthetic_flame_arrays

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "docs" / "recipes"
INDEX = RECIPES / "README.md"
EXAMPLES = ROOT / "examples"

EXPECTED = ("ned_renderer", "ned_stage1", "dsm", "icface", "ganmut")
PENDING: set[str] = set()  # recipes being written elsewhere (skipped while missing)
# Recipes with a runnable stand-in example, and the conventions their upstream code uses.
CONVENTIONS = {
    "ned_renderer": ("rgb", (-1.0, 1.0)),
    "icface": ("rgb", (-1.0, 1.0)),
    "ganmut": ("bgr", (-1.0, 1.0)),
}
NOT_RUN = "# not run:"
# `asccl metric export`'s file, imported in the recipes' old-environment sections: its
# calls are checked against the template it is written from.
STANDALONE = {"asccl_loss_standalone": "asccl.metric.standalone.asccl_loss_standalone"}
OLD_ENVIRONMENTS = "## Old environments (torch 1.x / Python 3.8)"


def index_links() -> list[str]:
    """Recipe names the index links to, in order (``[...](name.md)``)."""
    return re.findall(r"\]\(([\w-]+)\.md\)", INDEX.read_text())


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """``(first line number, source)`` of every fenced ``python`` block of a markdown file."""
    text = path.read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


def free_names(tree: ast.AST) -> set[str]:
    """Names a block reads but never binds (imports, assignments, defs, arguments) and that
    are not builtins: an empty set means the block is self-contained."""
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return loaded - bound - set(dir(builtins))


def existing_recipes() -> list[str]:
    return [name for name in index_links() if (RECIPES / f"{name}.md").exists()]


@pytest.fixture(scope="module")
def metric_folder(tmp_path_factory):
    """A folder holding what the recipes load: ``metric.safetensors`` (a small random metric),
    and a synthetic FLAME-format head as ``DECA/data/generic_model.pkl`` (a plain pickle of
    numpy arrays) and as the converted ``flame.npz``."""
    folder = tmp_path_factory.mktemp("recipe_run")
    torch.manual_seed(0)
    metric = ASCCLMetric(backbone="iresnet18", image_size=64, num_anchors=(8, 4, 4, 2))
    save_metric(metric, folder / "metric.safetensors")
    pkl = folder / "DECA" / "data" / "generic_model.pkl"
    pkl.parent.mkdir(parents=True)
    arrays = synthetic_flame_arrays(shape_total=300, exp_total=100)  # FLAME's 300 + 100
    pkl.write_bytes(pickle.dumps(arrays, protocol=2))
    convert_flame(pkl, folder / "flame.npz")
    return folder


def test_free_names_tells_self_contained_blocks_apart():
    assert free_names(ast.parse("import torch\nx = torch.zeros(2)\nprint(len(x))")) == set()
    assert free_names(ast.parse("loss = loss_G + extra")) == {"loss_G", "extra"}
    assert free_names(ast.parse("self.asccl_step += 1")) == {"self"}


def test_the_index_lists_every_recipe_and_only_those():
    links = index_links()
    assert sorted(links) == sorted(EXPECTED), links
    on_disk = {path.stem for path in RECIPES.glob("*.md")} - {"README"}
    assert on_disk <= set(links), f"recipes missing from the index: {on_disk - set(links)}"


@pytest.mark.parametrize("name", EXPECTED)
def test_each_indexed_recipe_exists(name):
    path = RECIPES / f"{name}.md"
    if not path.exists():
        if name in PENDING:
            pytest.skip(f"{path.name} is being written by another part of issue 7")
        pytest.fail(f"the index links {path.name}, which does not exist")
    assert path.read_text().startswith("# Recipe")


def test_the_index_links_examples_that_exist():
    examples = re.findall(r"\]\(\.\./\.\./examples/([\w.-]+\.py)\)", INDEX.read_text())
    assert sorted(examples) == sorted(f"{name}_minimal.py" for name in CONVENTIONS)
    for example in examples:
        assert (EXAMPLES / example).is_file(), example


@pytest.mark.parametrize("name", existing_recipes())
def test_recipe_blocks_parse_and_self_contained_ones_run(name, metric_folder, monkeypatch):
    path = RECIPES / f"{name}.md"
    blocks = python_blocks(path)
    assert blocks, f"{path.name} has no python block"
    monkeypatch.chdir(metric_folder)
    ran = []
    for line, source in blocks:
        try:
            tree = ast.parse(source, filename=f"{path.name}:{line}")
        except SyntaxError as error:
            pytest.fail(f"{path.name}, block at line {line} does not parse: {error}")
        if free_names(tree) or source.lstrip().startswith(NOT_RUN):
            continue
        namespace: dict = {"__name__": f"recipe_{name}"}
        exec(compile(tree, f"{path.name}:{line}", "exec"), namespace)
        ran.append(namespace)
    if name not in CONVENTIONS:
        return
    # A recipe with an example must have at least one runnable block, and the supervision it
    # builds must declare the conventions of the upstream code the recipe documents.
    assert ran, f"{path.name} has no self-contained block"
    built = [ns["asccl"] for ns in ran if isinstance(ns.get("asccl"), ASCCLSupervision)]
    assert built, f"no self-contained block of {path.name} builds `asccl`"
    channel_order, value_range = CONVENTIONS[name]
    for supervision in built:
        assert supervision.loss.channel_order == channel_order
        assert supervision.loss.input_range == value_range


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_each_recipe_points_to_its_example(name):
    example = f"examples/{name}_minimal.py"
    assert example in (RECIPES / f"{name}.md").read_text()
    assert (ROOT / example).is_file()


@pytest.mark.parametrize(("name", "steps"), [("icface", 3), ("ganmut", 4)])
def test_the_example_runs_and_logs_a_finite_asccl_value(name, steps, capsys):
    # Steps chosen so that the metric runs twice: ICface's first generator update and
    # GANmut's first one (iteration 1, n_critic 2) fall inside the 2-step warm-up.
    history = runpy.run_path(str(EXAMPLES / f"{name}_minimal.py"))["main"](steps=steps)
    assert len(history) == steps
    out = capsys.readouterr().out
    values = [float(v) for v in re.findall(r"(?<![\w/])(?:G/loss_)?asccl\s*[=:]\s*([^\s,]+)", out)]
    weights = [float(v) for v in re.findall(r"asccl_weight\s*[=:]\s*([^\s,]+)", out)]
    assert len(values) >= 2 and all(math.isfinite(v) and v > 0 for v in values), out
    assert weights[0] < 1.0 and weights[-1] == 1.0, weights  # the warm-up ramp is visible


# --- what the recipes say, checked against the code ------------------------------------------
#
# Each recipe declares the adapter it uses in one fenced ``adapter`` block of ``key: value``
# lines (a trailing ``(...)`` is a comment), e.g.
#
#     adapter:        ganmut
#     channel order:  bgr
#     input range:    [-1, 1]
#     frames:         last
#     generated key:  generated   (outputs: x_fake)
#     source key:     image       (batch: x_real)
#
# ``with: layout="ned"`` lists the fields the recipe's code changes (never a convention).
# The test builds the adapter from the registry (``ADAPTERS`` / ``get_coefficient_adapter``)
# and compares every declared value with the adapter's field.

CONVENTION_FIELDS = ("channel_order", "value_range", "frames")
REQUIRED_FIELDS = (*CONVENTION_FIELDS, "generated_key", "source_key")
CHANNEL_WORD = re.compile(r"\b(rgb|bgr)\b", re.IGNORECASE)
RANGE = re.compile(r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]")
OVERRIDE = r"(?:channel_order|value_range|frames)\s*=\s*(?:[\"']\w+[\"']|\([^)]*\))"
UNWIRED = re.compile(r"once wired|not (?:yet )?wired|not yet (?:available|implemented)", re.I)


def declaration(path: Path) -> dict[str, str]:
    """The ``key: value`` lines of the recipe's one fenced ``adapter`` block."""
    blocks = re.findall(r"^```adapter\n(.*?)^```", path.read_text(), re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, f"{path.name}: expected one ```adapter block, found {len(blocks)}"
    declared = {}
    for line in blocks[0].splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        assert sep, f"{path.name}: adapter block line {line!r} is not 'key: value'"
        value = re.sub(r"\s+\(.*\)\s*$", "", value).strip()
        declared[key.strip().lower()] = value
    return declared


def declared_fields(declared: dict[str, str]) -> dict[str, object]:
    """Declared values as adapter fields: ``"input range"`` -> ``value_range`` (a float
    pair), ``"<x> key"`` -> ``<x>_key`` (``none`` -> ``None``), the rest by name."""
    fields: dict[str, object] = {}
    for key, value in declared.items():
        if key in ("adapter", "with"):
            continue
        field = "value_range" if key == "input range" else key.replace(" ", "_")
        if field == "value_range":
            fields[field] = tuple(float(v) for v in ast.literal_eval(value))
        elif value.lower() == "none":
            fields[field] = None
        else:
            fields[field] = value
    return fields


def changes_of(declared: dict[str, str]) -> dict[str, object]:
    """``with: a="x", b=1`` -> ``{"a": "x", "b": 1}``."""
    text = declared.get("with", "")
    if not text:
        return {}
    call = ast.parse(f"f({text})", mode="eval").body
    assert isinstance(call, ast.Call) and not call.args, text
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def registered_adapter(name: str, changes: dict[str, object], folder: Path):
    """The adapter ``name`` as the registry builds it (coefficient adapters on the
    synthetic FLAME-format head)."""
    if name in ADAPTERS:
        return get_adapter(name, **changes)
    assert name in COEFFICIENT_ADAPTERS, f"{name!r} is in no adapter registry"
    flame = load_flame(folder / "flame.npz", n_shape=100, n_exp=50)
    return get_coefficient_adapter(name, model=flame, **changes)


def statements(text: str) -> list[tuple[int, str]]:
    """``(line, unit)``: prose sentences, table cells and code lines of a markdown text."""
    units: list[tuple[int, str]] = []
    paragraph: list[str] = []
    start = 0

    def flush() -> None:
        if paragraph:
            for sentence in re.split(r"(?<=[.;!?])\s+", " ".join(paragraph)):
                units.append((start, sentence))
            paragraph.clear()

    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            flush()
            fenced = not fenced
        elif fenced:
            units.append((number, line))
        elif line.lstrip().startswith("|"):
            flush()
            units.extend((number, cell) for cell in line.strip().strip("|").split("|"))
        elif not line.strip() or line.startswith("#") or re.match(r"\s*[-*] ", line):
            flush()
            if line.strip() and not line.startswith("#"):
                start, paragraph[:] = number, [line.strip()[2:]]
        else:
            if not paragraph:
                start = number
            paragraph.append(line.strip())
    flush()
    return units


def names_adapter(unit: str, name: str) -> bool:
    """Whether ``unit`` names the registered adapter ``name`` or states what an adapter
    declares by default."""
    quoted = rf"[\"']{re.escape(name)}[\"']"
    forms = (
        rf"ADAPTERS\[{quoted}\]",
        rf"get_(?:coefficient_)?adapter\(\s*{quoted}",
        rf"adapter\s*=\s*{quoted}",
        rf"{quoted}\s+adapter",
        r"\badapter\s+declares\b",
        r"\badapter's default\b",
    )
    return any(re.search(form, unit) for form in forms)


def contradictions(text: str, name: str, fields: dict[str, object]) -> list[str]:
    """Statements of ``text`` about adapter ``name`` that contradict its ``fields``:
    a channel order or a range stated next to the adapter's name, a ``frames=`` value
    called the default, a command said to be not wired."""
    found = []
    low, high = fields["value_range"]
    for line, unit in statements(text):
        where = f"line {line}: {unit.strip()!r}"
        if names_adapter(unit, name):
            claims = re.sub(OVERRIDE, "", unit)  # an explicit override claims nothing
            for word in CHANNEL_WORD.findall(claims):
                if word.lower() != fields["channel_order"]:
                    found.append(
                        f"{where} says {word}, the adapter declares {fields['channel_order']}"
                    )
            for a, b in RANGE.findall(claims):
                if (float(a), float(b)) != (low, high):
                    found.append(f"{where} says [{a}, {b}], the adapter declares [{low}, {high}]")
        for match in re.finditer(r"frames\s*=\s*[\"'](\w+)[\"']", unit):
            after = unit[match.end() :].split("frames", 1)[0]
            before = unit[max(0, match.start() - 25) : match.start()]
            if (
                re.search(r"\bdefault\b", after + " " + before)
                and match.group(1) != fields["frames"]
            ):
                found.append(f"{where} calls frames={match.group(1)!r} the default, "
                             f"the adapter's is {fields['frames']!r}")  # fmt: skip
        if commands_in(unit) and UNWIRED.search(unit):
            found.append(f"{where} says a command that exists is not wired")
    return found


def commands_in(unit: str) -> list[str]:
    """``asccl ...`` command lines in the inline code spans of a unit, minus ``asccl``."""
    spans = re.findall(r"`(?:\$ )?(?:python -m )?asccl ([^`]+)`", unit)
    return [span.strip() for span in spans]


def shell_commands(text: str) -> list[str]:
    """``asccl ...`` lines of the fenced shell (``bash``, ``sh``, ``console``, bare) blocks."""
    lines, fence = [], None  # fences pair in order: a closing ``` opens nothing
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
        elif fence in ("", "bash", "sh", "shell", "console"):
            lines.append(line.strip())
    pattern = r"(?:\$ )?(?:python -m )?asccl (.+)"
    return [m.group(1) for line in lines if (m := re.fullmatch(pattern, line))]


def command_error(argv: list[str]) -> str | None:
    """Why ``asccl <argv>`` does not parse (as ``asccl.cli.main`` parses it), or ``None``."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit:
        return "argparse refused it"
    if extra and not getattr(args, "takes_overrides", False):
        return f"unrecognised arguments: {extra}"
    return None


def signature_errors(tree: ast.AST) -> list[str]:
    """Calls in a block to asccl names it imports (and to objects it builds from them)
    whose arguments the current signatures do not take."""
    imported: dict[str, object] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        name = STANDALONE.get(node.module or "", node.module or "")
        if name == "asccl" or name.startswith("asccl."):
            module = __import__(name, fromlist=["_"])
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                imported[alias.asname or alias.name] = getattr(module, alias.name)
    instances: dict[str, type] = {}  # "asccl" / "self.asccl" -> the class it was built from
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            while isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Call):
                call = call.func.value  # ASCCLSupervision(...).to(device)
            built = imported.get(call.func.id) if isinstance(call.func, ast.Name) else None
            if inspect.isclass(built):
                for target in node.targets:
                    instances[ast.unparse(target)] = built
    errors = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or any(isinstance(a, ast.Starred) for a in node.args):
            continue
        func = ast.unparse(node.func)
        if func in imported:
            target = imported[func]
        elif func in instances:
            target = instances[func].forward
        else:
            continue
        if not callable(target):
            continue
        signature = inspect.signature(target)
        if func in instances:
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        keywords = [kw.arg for kw in node.keywords if kw.arg is not None]
        if "metric_changes" in signature.parameters:  # ASCCLLoss, ASCCLSupervision
            metric = {f.name for f in dataclasses.fields(MetricConfig)} - {"weight"}
            extra = [k for k in keywords if k not in signature.parameters]
            errors += [f"{func}(... {k}=): not a metric setting" for k in extra if k not in metric]
            keywords = [k for k in keywords if k in signature.parameters]
        try:
            signature.bind(*node.args, **dict.fromkeys(keywords))
        except TypeError as error:
            errors.append(f"line {node.lineno}: {ast.unparse(node)[:80]}: {error}")
    return errors


def adapter_uses(tree: ast.AST) -> list[tuple[str, dict[str, object]]]:
    """``(name, convention changes)`` of each ``get_adapter``/``get_coefficient_adapter``
    call and each ``adapter="name"`` argument in a block."""
    uses = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func).rsplit(".", 1)[-1]
        if func in ("get_adapter", "get_coefficient_adapter") and node.args:
            literal = {}
            for kw in node.keywords:
                if kw.arg in CONVENTION_FIELDS:
                    literal[kw.arg] = ast.literal_eval(kw.value)
            uses.append((ast.literal_eval(node.args[0]), literal))
        for kw in node.keywords:
            if kw.arg == "adapter" and isinstance(kw.value, ast.Constant):
                uses.append((kw.value.value, {}))
    return uses


def supervision_calls(tree: ast.AST) -> list[tuple[set[str], set[str]]]:
    """Dict-literal keys of ``asccl(batch, outputs, step)`` calls: ``(batch, outputs)`` keys."""
    calls = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("asccl", "self.asccl")
            and len(node.args) >= 2
            and all(isinstance(a, ast.Dict) for a in node.args[:2])
        ):
            keys = [{ast.literal_eval(k) for k in a.keys if k is not None} for a in node.args[:2]]
            calls.append((keys[0], keys[1]))
    return calls


def test_contradictions_are_found():
    fields = {"channel_order": "bgr", "value_range": (-1.0, 1.0), "frames": "all"}
    text = (
        '`ADAPTERS["ganmut"]` declares RGB. It reads `cv2.COLOR_BGR2RGB` images.\n\n'
        '`frames="last"` (the adapter\'s default) keeps one frame; `frames="all"` folds.\n\n'
        '| a | `adapter="ganmut"`, [0, 1] |\n\n'
        "```python\n"
        'asccl = ASCCLSupervision(adapter="ganmut")  # [-1, 1], BGR\n'
        "```\n\n"
        'Pass `get_adapter("ganmut", channel_order="rgb")` for such a copy.\n\n'
        "The CLI equivalent, once wired: `asccl face3d convert-flame a.pkl b.npz`.\n"
    )
    found = contradictions(text, "ganmut", fields)
    assert len(found) == 4, found
    assert "RGB" in found[0] and "frames='last'" in found[1] and "[0, 1]" in found[2]
    assert "not wired" in found[3]
    assert command_error(["face3d", "convert-flame", "a.pkl", "b.npz"]) is None
    assert command_error(["face3d", "convert-flame", "a.pkl"]) is not None
    assert command_error(["metric", "info", "x", "--frames", "all"]) is not None
    assert command_error(["data", "pairs", "--workers", "4"]) is None  # config overrides
    bad = ast.parse(
        "from asccl.losses import ASCCLLoss\nfrom asccl.spfem import ASCCLSupervision\n"
        "loss = ASCCLLoss('m.safetensors', weight=2.0)\n"
        "asccl = ASCCLSupervision(checkpoint='m', adapter='ganmut', num_workers=2).to('cpu')\n"
        "asccl({}, {}, 0, 1, 2)\n"
    )
    assert len(signature_errors(bad)) == 3, signature_errors(bad)


@pytest.mark.parametrize("name", EXPECTED)
def test_the_recipe_declares_the_adapter_as_the_registry_does(name, metric_folder):
    path = RECIPES / f"{name}.md"
    declared = declaration(path)
    fields, changes = declared_fields(declared), changes_of(declared)
    assert set(REQUIRED_FIELDS) <= set(fields), f"{path.name}: declare {REQUIRED_FIELDS}"
    assert not set(changes) & set(CONVENTION_FIELDS), "conventions come from the registry"
    adapter = registered_adapter(declared["adapter"], changes, metric_folder)
    for field, value in fields.items():
        actual = getattr(adapter, field)
        assert actual == value, (
            f"{path.name} declares {field}={value!r}; the adapter has {actual!r}"
        )


@pytest.mark.parametrize("name", EXPECTED)
def test_no_statement_of_the_recipe_contradicts_the_registry(name, metric_folder):
    path = RECIPES / f"{name}.md"
    declared = declaration(path)
    adapter = registered_adapter(declared["adapter"], changes_of(declared), metric_folder)
    fields = {field: getattr(adapter, field) for field in CONVENTION_FIELDS}
    found = contradictions(path.read_text(), declared["adapter"], fields)
    assert not found, f"{path.name}:\n" + "\n".join(found)
    # The index's row for the recipe states the same channel order and range.
    row = next(line for line in INDEX.read_text().splitlines() if f"]({name}.md)" in line)
    assert {w.lower() for w in CHANNEL_WORD.findall(row)} <= {fields["channel_order"]}, row
    assert {(float(a), float(b)) for a, b in RANGE.findall(row)} <= {fields["value_range"]}, row


@pytest.mark.parametrize("name", EXPECTED)
def test_the_recipe_code_uses_its_adapter_and_current_signatures(name):
    path = RECIPES / f"{name}.md"
    declared = declaration(path)
    fields = declared_fields(declared)
    for line, source in python_blocks(path):
        tree = ast.parse(source)
        where = f"{path.name}, block at line {line}"
        assert not signature_errors(tree), f"{where}: {signature_errors(tree)}"
        for used, literal in adapter_uses(tree):
            assert used == declared["adapter"], f"{where} uses adapter {used!r}"
            for field in set(literal) & set(CONVENTION_FIELDS):
                value = literal[field]
                value = tuple(map(float, value)) if field == "value_range" else value
                assert value == fields[field], f"{where}: {field}={value!r} contradicts the adapter"
        for batch_keys, output_keys in supervision_calls(tree):
            assert fields["source_key"] in batch_keys, f"{where}: batch keys {batch_keys}"
            assert fields["generated_key"] in output_keys, f"{where}: outputs keys {output_keys}"
        assert "num_workers" not in source, f"{where}: asccl's setting is `workers`"


@pytest.mark.parametrize("path", [INDEX, *(RECIPES / f"{name}.md" for name in EXPECTED)],
                         ids=lambda p: p.stem)  # fmt: skip
def test_every_asccl_command_line_parses_and_local_paths_exist(path):
    text = path.read_text()
    commands = [command for _, unit in statements(text) for command in commands_in(unit)]
    commands += shell_commands(text)
    for command in commands:
        error = command_error(shlex.split(command))
        assert error is None, f"{path.name}: `asccl {command}`: {error}"
    for target in re.findall(
        r"(?<![\w/.])((?:examples|benchmarks|scripts|configs)/[\w./-]+\.\w+)", text
    ):
        assert (ROOT / target).exists(), f"{path.name} names {target}, which does not exist"
    for target in re.findall(r"\]\((\.\./[^)#]+)\)", text):
        assert (path.parent / target).resolve().exists(), f"{path.name} links {target}"


@pytest.mark.parametrize("name", EXPECTED)
def test_each_recipe_shows_the_route_for_old_environments(name):
    """A section with the export command and the exported loss built in the upstream code,
    with the channel order and range its adapter declares."""
    path = RECIPES / f"{name}.md"
    text = path.read_text()
    assert text.count(OLD_ENVIRONMENTS) == 1, f"{path.name}: no {OLD_ENVIRONMENTS!r} section"
    section = text.split(OLD_ENVIRONMENTS, 1)[1].split("\n## ", 1)[0]
    assert "metric export metric.safetensors asccl_export/" in shell_commands(section)
    fields = declared_fields(declaration(path))
    built = 0
    for _, source in python_blocks(path):
        tree = ast.parse(source)
        if not any(
            isinstance(n, ast.ImportFrom) and n.module in STANDALONE for n in ast.walk(tree)
        ):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "ASCCLLoss":
                built += 1
                given = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
                order = given.get("channel_order", "rgb")
                value_range = tuple(map(float, given.get("input_range", (-1, 1))))
                assert order == fields["channel_order"], f"{path.name}: {order}"
                assert value_range == fields["value_range"], f"{path.name}: {value_range}"
    assert built, f"{path.name}: no block builds the exported ASCCLLoss"


def test_the_index_lists_the_old_environment_routes():
    assert OLD_ENVIRONMENTS in INDEX.read_text()
