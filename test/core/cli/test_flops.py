"""FLOPs report: grows with resolution, counts the scan, prints every resolution."""
from ecmnet_core.cli.flops import main, measure, scan_flops
from ecmnet_core.model import ECMNet


def test_flops_scale_with_pixels():
    m = ECMNet(num_classes=19).eval()
    small, big = measure(m, 64, 64), measure(m, 128, 128)
    ratio = big["gflops"] / small["gflops"]
    assert 3.5 < ratio < 4.5, ratio          # linear in pixel count (convs + linear-time scan)
    assert scan_flops(m, 128, 128) > 0


def test_cli_prints_all_resolutions(capsys):
    assert main(["--classes", "11"]) == 0
    out = capsys.readouterr().out
    for res in ("360x480", "512x1024", "1024x1024", "1024x2048"):
        assert res in out
    assert "paper reports 8.27G" in out
