"""ECMNet architecture: shapes, gradients, parameter budget, determinism, config."""
import pytest
import torch

from ecmnet_core.model import ECMNet, ECMNetConfig, count_parameters


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ECMNet(num_classes=19)


@pytest.mark.parametrize("shape", [(1, 3, 360, 480), (1, 3, 375, 500), (1, 3, 64, 64), (2, 3, 97, 131)])
def test_output_shape_matches_input_for_odd_sizes(model, shape):
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (shape[0], 19, shape[2], shape[3])
    assert torch.isfinite(out).all()


def test_parameter_count_matches_paper_within_3_percent(model):
    n = count_parameters(model)
    assert abs(n - 0.87e6) / 0.87e6 <= 0.03, n


def test_parameter_count_depends_on_classes_only_in_classifier():
    a, b = ECMNet(num_classes=19), ECMNet(num_classes=11)
    assert count_parameters(a) - count_parameters(b) == 8 * (a.config.dec_width + 1)


def test_gradients_reach_every_parameter(model):
    model.train()
    model.zero_grad()
    x = torch.randn(2, 3, 64, 96)
    target = torch.randint(0, 19, (2, 64, 96))
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not dead, f"parameters without gradient: {dead}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_every_module_type_is_on_the_gradient_path(model):
    # each named block must influence the output: zeroing its parameters changes the logits
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    for name in ("enc1", "enc2", "enc3", "msau", "ffm", "dec", "up"):
        m = ECMNet(num_classes=19).eval()
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            for p in getattr(m, name).parameters():
                p.add_(torch.randn_like(p) * 0.5)
            assert not torch.allclose(m(x), ref), name


def test_eval_is_deterministic_and_batch_independent(model):
    model.eval()
    x = torch.randn(3, 3, 72, 88)
    with torch.no_grad():
        a = model(x)
        b = model(x)
        single = model(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(single[0], a[1], rtol=1e-4, atol=1e-4)


def test_config_round_trip_and_unknown_keys():
    cfg = ECMNetConfig(num_classes=7, widths=(32, 64, 32))
    again = ECMNetConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ValueError, match="unknown ECMNet config keys"):
        ECMNetConfig.from_dict({"num_classes": 3, "depth": 5})


def test_unknown_ss2d_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown SS2D backend 'nope'"):
        ECMNet(num_classes=3, ss2d_backend="nope")


def test_backend_switch_keeps_outputs(model):
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model.set_ss2d_backend("sequential")
        try:
            seq = model(x)
        finally:
            model.set_ss2d_backend("reference")
    torch.testing.assert_close(seq, ref, rtol=1e-5, atol=1e-5)
