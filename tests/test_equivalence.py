"""Equivalence of model/ (export-friendly rewrite) with an independent (B, N, C) reference.

The reference (benchmarks/research/published_shunted.py) is written straight from the published
architecture with the official state_dict key names; it is randomized with seeded,
realistic-scale values, saved in the official training-checkpoint format and loaded
through model.create_model(...). Logits must agree to 1e-4 in float32.
"""
import copy
import os
import pathlib
import sys

import pytest
import torch

HERE = pathlib.Path(__file__).resolve().parent
for _p in (str(HERE), str(HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from benchmarks.research.published_shunted import (VARIANTS, build_reference,  # noqa: E402
                                                   official_checkpoint, randomize_)

torch.set_num_threads(2)

NAMES = ["shunted_t", "shunted_s", "shunted_b"]
SEEDS = {"shunted_t": 11, "shunted_s": 22, "shunted_b": 33}
PUBLISHED_PARAMS = {"shunted_t": 11.5e6, "shunted_s": 22.4e6, "shunted_b": 39.6e6}
TOL = 1e-4


def _inputs(size, batch=2, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed + size))


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def api():
    try:
        import model  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name == "model":
            pytest.skip("model/ package not written yet")
        raise
    from model import CheckpointError, create_model, list_models
    return {"create_model": create_model, "list_models": list_models,
            "CheckpointError": CheckpointError}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("shunted_ckpts")


@pytest.fixture(scope="module")
def refs(workdir):
    """Lazily built, cached per variant: randomized reference, its checkpoints, its logits."""
    cache = {}

    def get(name):
        if name not in cache:
            ref = randomize_(build_reference(name), SEEDS[name]).eval()
            path = workdir / f"{name}_official.pth"
            official_checkpoint(ref, path)
            with torch.no_grad():
                logits = {s: ref(_inputs(s)) for s in (224, 256)}
            cache[name] = {"ref": ref, "official": path, "logits": logits}
        return cache[name]

    return get


@pytest.fixture(scope="module")
def loaded(api, refs):
    """create_model(name, checkpoint_path=<official checkpoint>) built once per variant."""
    cache = {}

    def get(name):
        if name not in cache:
            m = api["create_model"](name, checkpoint_path=str(refs(name)["official"]))
            cache[name] = m.eval()
        return cache[name]

    return get


# ------------------------------------------------------------------ reference-only sanity
@pytest.mark.parametrize("name", NAMES)
def test_reference_param_count(name):
    n = _nparams(build_reference(name))
    print(f"\n{name}: reference params {n / 1e6:.3f}M (published {PUBLISHED_PARAMS[name] / 1e6}M)")
    assert abs(n - PUBLISHED_PARAMS[name]) <= 0.01 * PUBLISHED_PARAMS[name]


def test_reference_keys_are_official():
    for name, (depths, extra) in VARIANTS.items():
        keys = set(build_reference(name).state_dict())
        last = 3 * (extra + 1)
        for k in ["patch_embed1.conv.0.weight", "patch_embed1.conv.1.running_mean",
                  f"patch_embed1.conv.{last}.weight", f"patch_embed1.conv.{last}.bias",
                  "patch_embed1.norm.weight", "patch_embed2.proj.weight",
                  "block1.0.attn.sr1.weight", "block1.0.attn.sr2.weight",
                  "block1.0.attn.kv1.weight", "block1.0.attn.local_conv2.bias",
                  "block3.0.attn.norm2.weight", f"block4.{depths[3] - 1}.attn.kv.weight",
                  "block4.0.attn.local_conv.weight", "block1.0.mlp.dwconv.dwconv.weight",
                  "norm4.weight", "head.weight"]:
            assert k in keys, (name, k)
        assert not any(k.startswith("block4.0.attn.sr") for k in keys)


@pytest.mark.parametrize("size", [224, 256])
def test_reference_forward_is_informative(refs, size):
    y = refs("shunted_t")["logits"][size]
    assert y.shape == (2, 1000) and torch.isfinite(y).all()
    assert y.std() > 0.3 and (y[0] - y[1]).abs().max() > 0.1  # not degenerate


def test_reference_comparison_is_sensitive(refs):
    """Plausible re-formulation mistakes move the logits far above TOL (so 1e-4 is meaningful)."""
    base = refs("shunted_t")
    x = _inputs(224)[:1]
    sd0 = base["ref"].state_dict()

    m = copy.deepcopy(base["ref"])

    def delta(mutate):
        sd = {k: v.clone() for k, v in sd0.items()}
        mutate(sd)
        m.load_state_dict(sd)
        with torch.no_grad():
            return (m(x) - base["logits"][224][:1]).abs().max().item()

    def interleave_kv(key, heads):  # rows laid out (heads, 2, d) instead of (2, heads, d)
        def f(sd):
            w = sd[key]
            d = w.shape[0] // (2 * heads)
            perm = torch.arange(w.shape[0]).reshape(2, heads, d).permute(1, 0, 2).reshape(-1)
            sd[key] = w[perm]
        return f

    def swap_q_halves(key):  # which query heads use which branch
        def f(sd):
            sd[key] = torch.cat(sd[key].chunk(2, 0)[::-1])
        return f

    def scale(key, s):
        def f(sd):
            sd[key] = sd[key] * s
        return f

    mutations = {
        "kv1 (h/2,2,d) layout stage 2": interleave_kv("block2.0.attn.kv1.weight", 2),
        "kv2 layout stage 3": interleave_kv("block3.0.attn.kv2.weight", 4),
        "kv layout stage 4": interleave_kv("block4.0.attn.kv.weight", 16),
        "q halves swapped": swap_q_halves("block2.0.attn.q.weight"),
        "local_conv1 off": scale("block2.1.attn.local_conv1.weight", 0.0),
        "local_conv off": scale("block4.0.attn.local_conv.weight", 0.0),
        "mlp dwconv off": scale("block3.1.mlp.dwconv.dwconv.weight", 0.0),
        "bn running_var": scale("patch_embed1.conv.1.running_var", 1.5),
        "attn.norm1 weight x1.01": scale("block1.0.attn.norm1.weight", 1.01),
    }
    for what, mutate in mutations.items():
        d = delta(mutate)
        print(f"\nmutation {what}: max |dlogit| = {d:.3g}")
        assert d > 100 * TOL, what


# -------------------------------------------------------------- against the lead's model
def test_list_models(api):
    names = set(api["list_models"]())
    assert {"shunted_t", "shunted_s", "shunted_b"} <= names


def test_create_model_without_checkpoint(api):
    m = api["create_model"]("shunted_t", num_classes=10).eval()
    with torch.no_grad():
        y = m(_inputs(224, batch=1))
    assert y.shape == (1, 10) and y.dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_same_param_count(api, refs, loaded, name):
    # Informational unless grossly off (a deploy form may fold BN etc.).
    n_ref, n_new = _nparams(refs(name)["ref"]), _nparams(loaded(name))
    print(f"\n{name}: params reference {n_ref} / model {n_new}")
    assert abs(n_new - n_ref) <= 0.01 * n_ref


@pytest.mark.parametrize("size", [224, 256])
@pytest.mark.parametrize("name", NAMES)
def test_equivalence_official_checkpoint(refs, loaded, name, size):
    r = refs(name)
    m = loaded(name)
    with torch.no_grad():
        y = m(_inputs(size))
    y_ref = r["logits"][size]
    assert y.shape == y_ref.shape and y.dtype == torch.float32
    diff = (y - y_ref).abs().max().item()
    print(f"\n{name}@{size}: max |logit diff| = {diff:.3g} (logit std {y_ref.std():.3f})")
    assert diff <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_equivalence_float64(refs, loaded, name):
    """In float64 rounding noise vanishes (~1e-14): any residual is a real formula difference."""
    ref = copy.deepcopy(refs(name)["ref"]).double()
    m = copy.deepcopy(loaded(name)).double()
    x = _inputs(224, batch=1).double()
    with torch.no_grad():
        diff = (m(x) - ref(x)).abs().max().item()
    print(f"\n{name}@224 float64: max |logit diff| = {diff:.3g}")
    assert diff <= 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_plain_state_dict_loads_and_matches(api, refs, workdir, name):
    r = refs(name)
    path = workdir / f"{name}_plain.pth"
    torch.save(r["ref"].state_dict(), path)
    m = api["create_model"](name, checkpoint_path=str(path)).eval()
    with torch.no_grad():
        diff = (m(_inputs(224)) - r["logits"][224]).abs().max().item()
    print(f"\n{name} plain state dict @224: max |logit diff| = {diff:.3g}")
    assert diff <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_official_key_names_survive_the_round_trip(refs, name):
    from model import read_checkpoint
    stored = read_checkpoint(refs(name)["official"])
    assert stored.official
    assert {stored.file_key(key) for key in stored.state_dict} == set(refs(name)["ref"].state_dict())


def test_safetensors_loads_and_matches(api, refs, workdir):
    st = pytest.importorskip("safetensors.torch")
    r = refs("shunted_t")
    path = workdir / "shunted_t.safetensors"
    st.save_file({k: v.contiguous() for k, v in r["ref"].state_dict().items()}, str(path))
    m = api["create_model"]("shunted_t", checkpoint_path=str(path)).eval()
    with torch.no_grad():
        diff = (m(_inputs(256)) - r["logits"][256]).abs().max().item()
    print(f"\nshunted_t safetensors @256: max |logit diff| = {diff:.3g}")
    assert diff <= TOL


def _tiny_activation_state_dict(sd):
    """Shrink every tensor feeding a LayerNorm by 1e-3 so that LayerNorm eps matters."""
    pats = ("patch_embed2.proj.", "patch_embed3.proj.", "patch_embed4.proj.", ".norm.weight",
            ".norm.bias", ".attn.proj.", ".mlp.fc2.", ".attn.sr1.", ".attn.sr2.")
    last = max(int(k.split(".")[2]) for k in sd if k.startswith("patch_embed1.conv."))
    out = {}
    for k, v in sd.items():
        hit = k.startswith(f"patch_embed1.conv.{last}.") or (
            k.startswith("patch_embed") and any(p in k for p in pats[:5])) or (
            k.startswith("block") and any(p in k for p in pats[5:]))
        out[k] = v * 1e-3 if hit else v
    return out


def test_layernorm_eps_matches(api, refs, workdir):
    """Checkpoint with ~1e-3-scale activations into every LayerNorm: eps 1e-5 vs 1e-6 shows."""
    r = refs("shunted_t")
    sd = _tiny_activation_state_dict(r["ref"].state_dict())
    ref = build_reference("shunted_t").eval()
    ref.load_state_dict(sd)
    x = _inputs(224)
    with torch.no_grad():
        y_ref = ref(x)
        # the probe really is eps-sensitive (reference with every LayerNorm eps swapped)
        for mod in ref.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.eps = 1e-5 if mod.eps == 1e-6 else 1e-6
        assert (ref(x) - y_ref).abs().max() > 100 * TOL
    path = workdir / "tiny_act.pth"
    torch.save(sd, path)
    m = api["create_model"]("shunted_t", checkpoint_path=str(path)).eval()
    with torch.no_grad():
        diff = (m(x) - y_ref).abs().max().item()
    print(f"\nLayerNorm-eps probe @224: max |logit diff| = {diff:.3g}")
    assert diff <= TOL


# ------------------------------------------------------------------ bad checkpoints
class _ExecPayload:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('pwned')",))


class _WriteTextPayload:
    def __init__(self, target):
        self.target = pathlib.Path(target)

    def __reduce__(self):
        return (pathlib.Path.write_text, (self.target, "pwned"))


@pytest.mark.parametrize("where", ["official_extra_key", "official_args", "plain_state_dict"])
@pytest.mark.parametrize("payload", [_ExecPayload, _WriteTextPayload])
def test_malicious_pickle_refused_without_side_effect(api, refs, workdir, payload, where):
    r = refs("shunted_t")
    marker = workdir / f"pwned_{payload.__name__}_{where}.txt"
    evil = payload(marker)
    sd = dict(r["ref"].state_dict())
    if where == "plain_state_dict":
        sd["block1.0.attn.q.weight_meta"] = evil
        obj = sd
    else:
        obj = torch.load(r["official"], weights_only=False)
        if where == "official_args":
            obj["args"] = evil
        else:
            obj["extra"] = evil
    path = workdir / f"evil_{payload.__name__}_{where}.pth"
    torch.save(obj, path)
    assert not marker.exists()
    with pytest.raises(api["CheckpointError"]) as ei:
        api["create_model"]("shunted_t", checkpoint_path=str(path))
    print(f"\nrefused ({payload.__name__}, {where}): {ei.value}")
    assert not marker.exists(), "unpickling executed the payload"


def test_wrong_variant_names_it(api, refs):
    with pytest.raises(api["CheckpointError"]) as ei:
        api["create_model"]("shunted_t", checkpoint_path=str(refs("shunted_s")["official"]))
    print(f"\nwrong variant: {ei.value}")
    assert "shunted_s" in str(ei.value)


def test_misshaped_tensor_names_key(api, refs, workdir):
    key = "block3.2.mlp.fc1.weight"  # (1024, 256) in shunted_t
    obj = torch.load(refs("shunted_t")["official"], weights_only=False)
    obj["model"][key] = obj["model"][key].t().contiguous()
    path = workdir / "misshaped.pth"
    torch.save(obj, path)
    with pytest.raises(api["CheckpointError"]) as ei:
        api["create_model"]("shunted_t", checkpoint_path=str(path))
    print(f"\nmis-shaped: {ei.value}")
    assert key in str(ei.value)


def test_missing_tensor_names_key(api, refs, workdir):
    key = "block1.0.attn.local_conv1.bias"
    sd = dict(refs("shunted_t")["ref"].state_dict())
    del sd[key]
    path = workdir / "missing.pth"
    torch.save(sd, path)
    with pytest.raises(api["CheckpointError"]) as ei:
        api["create_model"]("shunted_t", checkpoint_path=str(path))
    print(f"\nmissing key: {ei.value}")
    assert key in str(ei.value)


def test_garbage_file_refused(api, workdir):
    path = workdir / "garbage.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(api["CheckpointError"]):
        api["create_model"]("shunted_t", checkpoint_path=str(path))


@pytest.mark.parametrize("size", [32, 64])
def test_deploy_forms_match_reference(refs, loaded, size):
    """The exported forms (folded norms, single-token K/V scales collapsed into 1x1 convs at 32 px,
    centred residual stream for XNNPACK, each backend's norm form) still compute the published network."""
    from model.deploy import BACKENDS, RECIPES, deploy_form
    from model.deploy.attention import (FewReshapesAttention, ScaledQueryAttention, SingleTokenAttention,
                                        SingleTokenCoarseAttention)
    x = _inputs(size)
    with torch.no_grad():
        y_ref = refs("shunted_t")["ref"](x)
        deploys = {backend: deploy_form(loaded("shunted_t"), backend, size) for backend in BACKENDS}
        outputs = {backend: deploy(x) for backend, deploy in deploys.items()}
    for backend, deploy in deploys.items():
        kinds = [type(b.attn) for s in deploy.stages for b in s.blocks]
        multi_token = FewReshapesAttention if RECIPES[backend].few_reshapes else ScaledQueryAttention
        assert kinds == ([SingleTokenCoarseAttention] * 7 + [SingleTokenAttention] if size == 32
                         else [multi_token] * 8), backend
        assert (outputs[backend] - y_ref).abs().max().item() <= TOL, backend
