"""fp8 that keeps bert-99's criterion, and `--precision auto` from evidence, on a trained proxy (CPU: e4m3 emulated).

The proxy is bench/bert_proxy's tiny shape, trained here once per session (tens of seconds on 2 cores) to a high
F1 with decisive answers: the model every test below judges precisions on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench" / "bert_proxy"))

from support.once import once_per_session  # noqa: E402

from subtool.errors import SubtoolError  # noqa: E402
from subtool.runner.bert import fp8_plan, precision_choice  # noqa: E402
from subtool.runner.bert.packed_model import FP8_MAX, PackedBert  # noqa: E402


@pytest.fixture(scope="session")
def proxy(tmp_path_factory):
    import train

    def build(out):
        args = ["--shape", "tiny", "--out", str(out), "--minutes", "10", "--steps", "1500", "--device", "cpu"]
        return train.main(args)

    record = once_per_session(tmp_path_factory, "fp8_tiny_proxy", build)  # trained by the first worker to ask
    from subtool.runner.bert.checkpoint import check_checkpoint
    from subtool.runner.bert.workload import load_data

    model = Path(record["model_path"])
    return record, model, load_data(model, Path(record["dataset_path"]), None, check_checkpoint(model))


@pytest.fixture(scope="session")
def fp32_logits(proxy):
    _, model, data = proxy
    ref = PackedBert(model, device="cpu", precision="fp32")
    return fp8_plan.eval_logits(ref, data.features, range(len(data.features)))


def fp8(model):
    return PackedBert(model, device="cpu", precision="fp8")


def logit_error(got, ref) -> float:
    return float(np.mean([np.mean((got[i] - ref[i]) ** 2) for i in ref]))


def test_the_proxy_trains_to_a_high_f1_with_decisive_answers(proxy, fp32_logits):
    record, _, data = proxy
    assert record["fp32_dev"]["f1"] >= 95, record
    assert record["fp32_dev"]["median_start_margin"] >= 2.0, record  # the best start beats the next clearly
    # the packed forward reads the trained checkpoint as transformers wrote it: the same F1
    assert fp8_plan.f1_on(data, fp32_logits) == pytest.approx(record["fp32_dev"]["f1"], abs=0.5)


def test_the_trainer_records_its_evaluations_and_stops_a_collapsed_model(proxy):
    import train

    record = proxy[0]
    assert record["history"] and record["history"][-1]["step"] <= record["steps"]
    assert {"loss", "grad_norm", "lr", "f1", "median_start_margin"} <= set(record["history"][0])
    tie = {"median_start_margin": 0.0}
    # the H200 run at lr 1e-4: every start logit tied from the first evaluation after the warm-up on
    assert train.collapsed([{"step": 400, **tie}, {"step": 500, **tie}], warmup=300)
    assert not train.collapsed([{"step": 200, **tie}, {"step": 300, **tie}], warmup=300)  # still warming up
    assert not train.collapsed([{"step": 400, **tie}, {"step": 500, "median_start_margin": 0.4}], warmup=300)
    assert not train.collapsed([{"step": 500, **tie}], warmup=300)


def test_emulated_fp8_quantizes_and_stays_close(proxy, fp32_logits):
    _, model, data = proxy
    got = fp8_plan.eval_logits(fp8(model), data.features, range(len(data.features)))
    err = logit_error(got, fp32_logits)
    scale = float(np.mean([np.mean(v**2) for v in fp32_logits.values()]))
    assert 0 < err < 0.01 * scale  # e4m3 changes the logits, a little
    assert fp8_plan.f1_on(data, got) >= 0.99 * fp8_plan.f1_on(data, fp32_logits)


def test_calibrated_static_scales_are_the_observed_amax_and_beat_the_weight_bound(proxy, fp32_logits):
    _, model, data = proxy
    m = fp8(model)
    bound = m.static_scales()
    cal = list(range(0, len(data.features), 3))
    seen: dict = {}
    m.layer_ops = [frozenset()] * m.shape.layers
    m.observer = lambda i, op, x: seen.__setitem__((i, op), max(seen.get((i, op), 0.0), float(x.abs().amax())))
    fp8_plan.eval_logits(m, data.features, cal)
    m.observer = None
    fp8_plan.apply_fallback(m, [])
    before = logit_error(fp8_plan.eval_logits(m, data.features, range(len(data.features))), fp32_logits)
    scales = fp8_plan.calibrate(m, data.features, cal)
    for key, s in scales.items():
        assert s == pytest.approx(seen[key] / FP8_MAX)
        assert s <= bound[key]  # a bound of every possible input is never below what inputs reach
    assert m.static_scales() == pytest.approx(scales) and m.scale_source == f"calibrated on {len(cal)} features"
    assert m.layer_ops == [frozenset({"qkv", "o", "ff1", "ff2"})] * m.shape.layers  # calibration restored them
    after = logit_error(fp8_plan.eval_logits(m, data.features, range(len(data.features))), fp32_logits)
    assert after < before  # finer e4m3 steps where the values are


def test_calibration_sees_only_the_batches_real_tokens(proxy):
    # on an H100 the attention kernel leaves a batch's padding rows unwritten: whatever memory held there flowed
    # into every observed input, and a NaN in it stopped calibration (run.fp8_calibration) on a model that has none
    _, model, data = proxy
    cal = list(range(0, len(data.features), 3))
    assert int(data.features.seq_lengths[cal].sum()) < 16384  # one batch, padded to the budget
    clean = fp8_plan.calibrate(fp8(model), data.features, cal)
    poisoned = fp8(model)
    attention = poisoned._attention

    def padding_is_nan(qkv, cu_seqlens, rows, sequences, out_scale=None):
        out = attention(qkv, cu_seqlens, rows, sequences, out_scale).clone()
        out[int(cu_seqlens[-1]) :] = float("nan")
        return out

    poisoned._attention = padding_is_nan
    seen = []
    poisoned.observer = lambda i, op, x: seen.append(x.shape[0])
    fp8_plan.eval_logits(poisoned, data.features, cal)
    poisoned.observer = None
    assert set(seen) == {int(data.features.seq_lengths[cal].sum())}
    assert fp8_plan.calibrate(poisoned, data.features, cal) == pytest.approx(clean)


def break_layer(m, layer: int) -> None:
    """Sabotage one layer's fp8: its e4m3 weights replaced by noise (its bf16 weights are intact). The tiny
    proxy finds the key in layer 0, so breaking that layer breaks the answers."""
    g = torch.Generator().manual_seed(layer)
    for op in ("qkv", "o", "ff1", "ff2"):
        w = m.layers[layer][op]["wq"]
        m.layers[layer][op]["wq"] = (torch.randn(w.shape, generator=g) * 100).clamp(-448, 448).to(w.dtype)


def test_a_layer_that_breaks_the_criterion_falls_back_to_bf16(proxy, fp32_logits):
    _, model, data = proxy
    m = fp8(model)
    cal = list(range(0, len(data.features), 2))
    fp8_plan.calibrate(m, data.features, cal)
    break_layer(m, 0)
    broken = fp8_plan.f1_on(data, fp8_plan.eval_logits(m, data.features, cal))
    assert broken < 0.99 * fp8_plan.f1_on(data, {i: fp32_logits[i] for i in cal})  # the sabotage does break it
    p = fp8_plan.plan(m, data, cal, fp32_logits, 0.99, do_calibrate=False)
    assert p.passes and p.fallback == [0], p.report()
    report = p.report()
    assert report["fp8_layers"] == [1] and report["bf16_layers"] == [0]
    assert report["search"][0]["bf16_layers"] == 0 and report["search"][-1]["bf16_layers"] == 1
    assert m.layer_ops[1] == frozenset({"qkv", "o", "ff1", "ff2"}) and m.layer_ops[0] == frozenset()
    assert "1 of 2 layers in fp8, layers 0 in bf16" == p.line()


NUDGES = (40, 60, 80, 100, 120, 160)  # noise added to layer 0's e4m3 weights, mildest first


def nudge_layer(m, layer: int, amp: float) -> None:
    """Milder than break_layer: noise of `amp` e4m3 steps added to one layer's fp8 weights, which moves a few
    answers of the tiny proxy (at 80, 3 of its 300 questions) where break_layer moves most."""
    g = torch.Generator().manual_seed(layer)
    for op in ("qkv", "o", "ff1", "ff2"):
        w = m.layers[layer][op]["wq"]
        m.layers[layer][op]["wq"] = (w.float() + torch.randn(w.shape, generator=g) * amp).clamp(-448, 448).to(w.dtype)


def test_a_shortfall_within_the_noise_moves_no_layer_and_a_strict_plan_does(proxy, fp32_logits):
    """fp8 a question or two short of fp32 on 100 calibration questions cannot be told from the target; moving a
    layer to bf16 for it would cost speed on noise (on the H200 proxy, `--precision fp8` put layer 0 in bf16 for it
    while auto's plan, on other questions, kept all 24 in fp8)."""
    _, model, data = proxy
    cal, _ = fp8_plan.subsets(data.features, 0, 100)
    for amp in NUDGES:
        m = fp8(model)
        nudge_layer(m, 0, amp)
        p = fp8_plan.plan(m, data, cal, fp32_logits, 1.0)
        if p.steps[0]["f1"] < p.f1_fp32 and p.steps[0]["verdict"] == "unsure":
            break
    else:
        pytest.fail("no nudge of layer 0 left fp8 a little short of fp32 on the calibration questions")
    assert p.fallback == [] and p.passes and p.verdict == "unsure" and p.margin < 0, p.report()
    assert p.keeps() == "is within 2 standard errors of" and p.calibration_questions == 100
    strict = fp8_plan.plan(m, data, cal, fp32_logits, 1.0, do_calibrate=False, strict=True)
    assert strict.fallback and strict.passes and strict.f1_fp8 >= strict.f1_fp32, strict.report()
    assert strict.report()["strict"] and strict.report()["search"][0]["verdict"] == "unsure"


def test_auto_plans_fp8_again_strictly_when_its_check_refuses_it(proxy):
    """The calibration questions cannot tell, so no layer moves; the larger check refuses that fp8; the strict
    plan moves the nudged layer to bf16 and the check is run again on it."""
    _, model, data = proxy
    for amp in NUDGES:

        def build(p, amp=amp):
            m = PackedBert(model, device="cpu", precision=p)
            if p == "fp8":
                nudge_layer(m, 0, amp)
            return m

        choice = precision_choice.choose(
            data, build, 1.0, candidates=("fp8",), n_check=200, n_calibration=100, max_check=200
        )
        entry = choice.evidence[1]
        if "first_plan" in entry:
            break
    else:
        pytest.fail("no nudge of layer 0 got past the calibration questions and was refused by the check")
    first = entry["first_plan"]
    assert first["fp8_plan"]["bf16_layers"] == [] and first["fp8_plan"]["verdict"] == "unsure", entry
    assert first["ratio"] < 1.0 and first["questions"] == 200
    assert entry["fp8_plan"]["strict"] and entry["fp8_plan"]["bf16_layers"] == [0], entry
    assert choice.precision == "fp8", choice.record()
    assert (
        "1 of 2 layers in fp8, layers 0 in bf16 (planned again: the check refused 2 of 2 layers in fp8 at "
        in choice.line
    )


def test_auto_picks_the_fastest_precision_that_keeps_the_target(proxy):
    _, model, data = proxy
    choice = precision_choice.prepare(model, data, "auto", 0.99, "cpu", n_check=150, n_calibration=100)
    assert choice.precision == "fp8" and choice.model.precision == "fp8"
    assert choice.line.startswith("precision auto → fp8: F1 ") and "of fp32's on 150 questions" in choice.line
    assert choice.fp8["scales"] == "calibrated on 100 features" and choice.fp8["bf16_layers"] == []
    rec = choice.record()
    assert [c["precision"] for c in rec["candidates"]] == ["fp32", "fp8"]


def test_auto_refuses_a_broken_precision_and_says_why(proxy):
    _, model, data = proxy

    def build(p):
        m = PackedBert(model, device="cpu", precision=p)
        if p == "fp8":  # broken fp8: noise for every layer's e4m3 weights
            for i in range(m.shape.layers):
                break_layer(m, i)
        return m

    choice = precision_choice.choose(data, build, 0.99, n_check=60, n_calibration=40, max_fallback=0)
    assert choice.precision == "bf16"
    fp8_entry = choice.evidence[1]
    assert fp8_entry["precision"] == "fp8" and "% of fp32's" in fp8_entry["refused"]
    assert "(fp8 refused: F1 " in choice.line and choice.line.startswith("precision auto → bf16")
    # with fallback allowed, the layer that matters (0) goes back to bf16 and fp8 passes with the rest
    choice = precision_choice.choose(data, build, 0.99, n_check=60, n_calibration=40, candidates=("fp8",))
    assert choice.precision == "fp8" and choice.fp8["bf16_layers"] == [0], choice.record()
    assert "1 of 2 layers in fp8, layers 0 in bf16" in choice.line
    # nothing passes: fp32, and the line says why each was refused
    choice = precision_choice.choose(
        data, build, 0.99, n_check=60, n_calibration=40, candidates=("fp8",), max_fallback=0
    )
    assert choice.precision == "fp32" and choice.line.startswith("precision auto → fp32: no faster precision keeps")
    assert "(fp8 refused: F1 " in choice.line


def test_auto_refuses_fp8_when_every_layer_needs_bf16(proxy):
    # every layer's fp8 weight scales a thousandfold: no layer can stay in fp8, and an "fp8" model with all of
    # them in bf16 is bf16 under another name, so auto refuses fp8 itself rather than choose it
    _, model, data = proxy

    def build(p):
        m = PackedBert(model, device="cpu", precision=p)
        if p == "fp8":
            for layer in m.layers:
                for op in ("qkv", "o", "ff1", "ff2"):
                    for key in ("ws", "ws_unit_rows"):
                        if key in layer[op]:
                            layer[op][key] = layer[op][key] * 1000
        return m

    choice = precision_choice.choose(data, build, 0.99, n_check=60, n_calibration=40, candidates=("fp8",))
    fp8_entry = choice.evidence[1]
    assert choice.precision == "fp32" and fp8_entry["refused"] == "every layer needs bf16 to keep the F1", fp8_entry
    assert fp8_entry["fp8_plan"]["bf16_layers"] == [0, 1]


def test_explicit_fp8_is_planned_and_reported(proxy):
    _, model, data = proxy
    choice = precision_choice.prepare(model, data, "fp8", 0.99, "cpu", n_calibration=80)
    assert choice.precision == "fp8" and choice.fp8["f1_ratio"] >= 0.99
    assert choice.line.startswith("precision fp8 (as asked): 2 of 2 layers in fp8; F1 ") and "keeps 99 %" in choice.line
    assert fp8_plan.weight_types(choice.record()["fp8_plan"], choice.precision) == "fp8"  # what the SUT will report


def test_a_plan_carried_to_another_copy_answers_as_the_planned_model_does(proxy):
    _, model, data = proxy
    planned = precision_choice.prepare(model, data, "fp8", 0.99, "cpu", n_calibration=80).model
    planned.layer_ops[1] = frozenset()  # a fallback too, so that the copy must take one
    settings = fp8_plan.settings(planned)
    assert settings["fallback"] == [1] and settings["source"] == "calibrated on 80 features"
    copy = fp8(model)
    some = list(range(0, len(data.features), 7))
    want = fp8_plan.eval_logits(planned, data.features, some)
    assert logit_error(fp8_plan.eval_logits(copy, data.features, some), want) > 0  # unplanned: another model
    fp8_plan.apply_settings(copy, settings)
    got = fp8_plan.eval_logits(copy, data.features, some)
    assert all(np.array_equal(got[i], want[i]) for i in some)
    assert copy.static_scales() == planned.static_scales() and copy.layer_ops == planned.layer_ops


def test_settings_for_another_shape_are_refused(proxy):
    _, model, _ = proxy
    copy = fp8(model)
    settings = fp8_plan.settings(copy)
    with pytest.raises(ValueError, match="another model"):
        fp8_plan.apply_settings(copy, {**settings, "fallback": [2]})  # the proxy has layers 0 and 1
    extra = {**settings["scales"], (2, "o"): 0.1}
    with pytest.raises(ValueError, match="another model"):
        fp8_plan.apply_settings(copy, {**settings, "scales": extra})


def test_the_system_description_names_what_the_products_ran_in():
    plan = lambda fp8, bf16: {"fp8_layers": fp8, "bf16_layers": bf16}  # noqa: E731 - a plan report's layer lists
    assert fp8_plan.weight_types(plan([0, 1], []), "fp8") == "fp8"
    assert fp8_plan.weight_types(plan([1], [0]), "fp8") == "fp8, bf16"
    assert fp8_plan.weight_types(plan([], [0, 1]), "fp8") == "bf16"  # fp8 as asked, every layer fell back
    assert fp8_plan.weight_types(None, "fp8") == "fp8"  # no plan (nothing calibrated): as asked
    assert fp8_plan.weight_types(None, "bf16") == fp8_plan.weight_types(plan([0], []), "bf16") == "bf16"


def test_the_accuracy_target_comes_from_the_catalogue():
    from subtool.runner.bert.workload import workload

    assert workload("bert-99").f1_ratio == 0.99 and workload("bert-99.9").f1_ratio == 0.999


def test_calibration_and_check_subsets_are_whole_disjoint_questions(proxy):
    _, _, data = proxy
    f = data.features
    cal, check = fp8_plan.subsets(f, 100, 60)
    ex = lambda idx: {int(f.example_index[i]) for i in idx}  # noqa: E731
    assert len(ex(cal)) == 60 and len(ex(check)) == 100 and not ex(cal) & ex(check)
    assert set(cal) == {i for i in range(len(f)) if int(f.example_index[i]) in ex(cal)}  # every window of each
    assert fp8_plan.subsets(f, 0, 60)[0] == cal == fp8_plan.subsets(f, 200, 60)[0]  # fp8 as asked calibrates as auto
    cal, check = fp8_plan.subsets(f, 0, 200)
    assert len(ex(cal)) == 200 and check == []
    cal, check = fp8_plan.subsets(f, 10_000, 10_000)  # more than there are: all of them, split
    assert len(ex(cal)) + len(ex(check)) == len(data.examples)


def test_more_questions_are_whole_new_questions_spread_over_the_rest(proxy):
    _, _, data = proxy
    f = data.features
    ex = lambda idx: {int(f.example_index[i]) for i in idx}  # noqa: E731
    cal, check = fp8_plan.subsets(f, 30, 20)
    extra = fp8_plan.more_questions(f, cal + check, 90)
    assert len(ex(extra)) == 90 and not ex(extra) & ex(cal + check)
    assert set(extra) == {i for i in range(len(f)) if int(f.example_index[i]) in ex(extra)}  # every window of each
    rest = len(data.examples) - 50
    assert len(ex(fp8_plan.more_questions(f, cal + check, 10**6))) == rest  # more than there are: all the rest
    assert fp8_plan.more_questions(f, cal + check, 0) == [] == fp8_plan.more_questions(f, range(len(f)), 5)


def test_question_f1_is_what_f1_on_averages(proxy, fp32_logits):
    _, _, data = proxy
    _, check = fp8_plan.subsets(data.features, 50, 0)
    logits = {i: fp32_logits[i] for i in check}
    per = fp8_plan.question_f1(data, logits)
    assert len(per) == 50 and all(0.0 <= v <= 1.0 for v in per.values())
    assert 100 * np.mean(list(per.values())) == pytest.approx(fp8_plan.f1_on(data, logits))


def test_a_check_too_close_to_call_grows_before_it_decides(proxy, fp32_logits):
    """The target set exactly at bf16's F1 ratio on the first 40 questions: no margin at all, so the check grows
    fourfold, then to its cap of 200, and then decides on the point estimate, and the line says so."""
    _, model, data = proxy
    _, check = fp8_plan.subsets(data.features, 40, 20)
    bf16 = PackedBert(model, device="cpu", precision="bf16")
    mine = fp8_plan.question_f1(data, fp8_plan.eval_logits(bf16, data.features, check))
    ref = fp8_plan.question_f1(data, {i: fp32_logits[i] for i in check})
    at_target = sum(mine.values()) / sum(ref.values())

    def build(p):
        return PackedBert(model, device="cpu", precision=p)

    choice = precision_choice.choose(
        data, build, at_target, candidates=("bf16",), n_check=40, n_calibration=20, max_check=200
    )
    entry = choice.evidence[1]
    assert [r["questions"] for r in entry["rounds"]] == [40, 160, 200], entry
    assert entry["rounds"][0]["verdict"] == "unsure" and abs(entry["rounds"][0]["margin"]) < 1e-6
    assert entry["questions"] == 200 and choice.evidence[0]["questions"] == 40
    last = entry["rounds"][-1]
    passes = last["verdict"] == "pass" or (last["verdict"] == "unsure" and last["margin"] >= 0)
    assert (choice.precision == "bf16") == passes, choice.record()
    assert "40 could not tell within 2 standard errors" in (choice.line if passes else entry["refused"])
    if passes:
        assert "of fp32's on 200 questions" in choice.line


def test_a_data_set_the_calibration_takes_whole_leaves_nothing_to_pass_on(proxy):
    _, model, data = proxy

    def build(p):
        return PackedBert(model, device="cpu", precision=p)

    choice = precision_choice.choose(data, build, 0.99, candidates=("bf16",), n_check=10, n_calibration=10**6)
    assert choice.precision == "fp32", choice.record()  # before: refused as F1 0.00 = 0 % of fp32's 100.00
    assert "no questions left to check on: the calibration subset took them all" in choice.evidence[1]["refused"]


@pytest.mark.parametrize(
    "sizes, verdict, note",
    [
        ([300], "pass", ""),
        ([300, 1200], "fail", "300 could not tell within 2 standard errors"),
        ([1200, 4800], "pass", "1,200 could not tell within 2 standard errors"),
        ([300, 1200, 4800], "unsure", "300 could not tell within 2 standard errors, nor 4,800: the point estimate"),
        ([120], "unsure", "120, all there are, could not tell within 2 standard errors: the point estimate decided"),
    ],
)
def test_the_line_says_how_the_check_grew(sizes, verdict, note):
    assert precision_choice._note(sizes, verdict).startswith(note) and bool(note) == bool(
        precision_choice._note(sizes, verdict)
    )


def _overflowing(checkpoint):
    """The tiny checkpoint in fp8 with one GELU input at +inf in layer 0 (what an activation past bf16's range
    becomes): its GELU output, and everything after it, is not finite."""
    model = fp8(checkpoint)
    model.layers[0]["ff1"]["b"][0] = float("inf")
    return model


def test_calibration_that_sees_non_finite_activations_is_refused_in_one_line(tiny_checkpoint, small_features):
    model = _overflowing(tiny_checkpoint)
    before = model.static_scales()
    with pytest.raises(SubtoolError, match=r"fp8 calibration: layer 0's GELU output is not finite on the 15 ") as err:
        fp8_plan.calibrate(model, small_features.features, range(0, 45, 3))
    assert err.value.rule == "run.fp8_calibration" and "--precision fp16" in err.value.hint
    assert model.static_scales() == before  # nothing set from them


def test_auto_refuses_fp8_whose_calibration_overflows_and_says_why(tiny_checkpoint, small_features):
    def build(p):
        return _overflowing(tiny_checkpoint) if p == "fp8" else PackedBert(tiny_checkpoint, device="cpu", precision=p)

    choice = precision_choice.choose(small_features, build, 0.99, n_check=20, n_calibration=10, candidates=("fp8",))
    assert choice.precision == "fp32" and "fp8 refused: fp8 calibration: layer 0's GELU output" in choice.line


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_static_scale_that_is_not_positive_and_finite_is_refused(tiny_checkpoint, bad):
    model = fp8(tiny_checkpoint)
    scales = model.static_scales()
    with pytest.raises(ValueError, match="positive and finite"):
        model.set_static_scales({**scales, (1, "ff2"): bad}, "test")
    assert model.static_scales() == scales
