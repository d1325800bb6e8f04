"""Applying policies to image files on disk, and the preview grid, on real digits and photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from autoaug.apply import apply_policy_to_path, find_images, load_image_batch, read_image
from autoaug.augment import BatchAugment
from autoaug.errors import AutoaugError
from autoaug.grid import GUTTER, augmentation_grid, cell_origin, digits_images, phase_starts, save_png
from autoaug.policy import OpCall, Policy, load_policy

NOOP = Policy(name="noop")
FLIP = Policy(name="flip", pre=[OpCall(op="HorizontalFlip", probability=1.0)])


def _digits(count: int) -> np.ndarray:
    """Real 8x8 digit scans, upscaled to 16x16 grey uint8."""
    from sklearn.datasets import load_digits

    digits = (load_digits().images[:count] * (255 / 16)).round().astype(np.uint8)
    return digits.repeat(2, axis=1).repeat(2, axis=2)


def _photos(count: int) -> list[PIL.Image.Image]:
    """Crops of scikit-learn's real sample photos, 40x30 RGB."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    return [PIL.Image.fromarray(photos[k % len(photos)][100 + 30 * k:160 + 30 * k, 200:280]).resize((40, 30))
            for k in range(count)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits/ (5 grey PNGs), digits/more/ (2 more), photos/nested/ (2 JPEGs, 1 RGBA PNG, 1 palette GIF),
    plus a corrupt .png and a .txt."""
    root = tmp_path_factory.mktemp("tree")
    (root / "digits" / "more").mkdir(parents=True)
    (root / "photos" / "nested").mkdir(parents=True)
    for i, digit in enumerate(_digits(7)):
        folder = root / "digits" if i < 5 else root / "digits" / "more"
        PIL.Image.fromarray(digit).save(folder / f"d{i}.png")
    photos = _photos(3)
    for i, photo in enumerate(photos[:2]):
        photo.save(root / "photos" / "nested" / f"p{i}.JPG", quality=95)
    photos[2].convert("RGBA").save(root / "photos" / "nested" / "rgba.png")
    photos[2].convert("P").save(root / "photos" / "palette.gif")
    (root / "photos" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "notes.txt").write_text("not an image")
    return root


IMAGES = ["digits/d0.png", "digits/d1.png", "digits/d2.png", "digits/d3.png", "digits/d4.png",
          "digits/more/d5.png", "digits/more/d6.png", "photos/corrupt.png", "photos/nested/p0.JPG",
          "photos/nested/p1.JPG", "photos/nested/rgba.png", "photos/palette.gif"]
READABLE = [name for name in IMAGES if "corrupt" not in name]


def _pixels(path: Path) -> torch.Tensor:
    return read_image(path)


def test_find_images_is_sorted_and_filters_by_extension_case_insensitively(tree: Path) -> None:
    assert [p.relative_to(tree).as_posix() for p in find_images(tree)] == IMAGES
    assert find_images(tree / "notes.txt") == [tree / "notes.txt"]  # a file named outright is taken as is


def test_read_image_keeps_grey_and_converts_other_modes_to_rgb(tree: Path) -> None:
    assert _pixels(tree / "digits" / "d0.png").shape == (1, 16, 16)
    assert _pixels(tree / "photos" / "nested" / "p0.JPG").shape == (3, 30, 40)
    rgba = _pixels(tree / "photos" / "nested" / "rgba.png")
    assert rgba.shape == (3, 30, 40) and rgba.dtype == torch.uint8
    assert _pixels(tree / "photos" / "palette.gif").shape == (3, 30, 40)
    digit = torch.from_numpy(_digits(1)[0])
    assert torch.equal(_pixels(tree / "digits" / "d0.png")[0], digit)


@pytest.mark.parametrize("name", ["photos/corrupt.png", "notes.txt"])
def test_read_image_rejects_unreadable_files_naming_them(tree: Path, name: str) -> None:
    with pytest.raises(AutoaugError, match="not a readable image") as error:
        read_image(tree / name)
    assert name.split("/")[-1] in str(error.value)


def test_apply_writes_copies_at_the_same_relative_paths(tree: Path, tmp_path: Path) -> None:
    report = apply_policy_to_path(load_policy("randaugment"), tree, tmp_path / "out", copies=2, seed=0)
    expected = sorted(f"{name.rsplit('.', 1)[0]}_aug{k}.png" for name in READABLE for k in range(2))
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in report.written)
    assert written == expected
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == expected
    for name in READABLE:
        source = _pixels(tree / name)
        for k in range(2):
            out = _pixels(tmp_path / "out" / f"{name.rsplit('.', 1)[0]}_aug{k}.png")
            assert out.shape == source.shape  # same size and channel count as the input
    assert {p.relative_to(tree).as_posix(): reason for p, reason in report.skipped} == {
        "notes.txt": "not an image file (by its extension)",
        "photos/corrupt.png": "not a readable image (unknown format or corrupt)",
    }


def test_each_output_comes_from_its_own_input(tree: Path, tmp_path: Path) -> None:
    """With an always-flip policy every copy must be exactly its own source flipped (rows not mixed up)."""
    apply_policy_to_path(FLIP, tree, tmp_path, copies=3, seed=0, batch_size=4)
    for name in READABLE:
        flipped = _pixels(tree / name).flip(-1)
        for k in range(3):
            assert torch.equal(_pixels(tmp_path / f"{name.rsplit('.', 1)[0]}_aug{k}.png"), flipped), (name, k)


def test_apply_is_deterministic_per_seed_and_differs_between_seeds(tree: Path, tmp_path: Path) -> None:
    policy = load_policy("randaugment")
    runs = {name: apply_policy_to_path(policy, tree / "digits", tmp_path / name, copies=2, seed=seed)
            for name, seed in (("a", 1), ("b", 1), ("c", 2))}
    outputs = {name: [_pixels(p) for p in report.written] for name, report in runs.items()}
    assert all(torch.equal(x, y) for x, y in zip(outputs["a"], outputs["b"], strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(outputs["a"], outputs["c"], strict=True))
    # copies of one image draw their own parameters
    assert not torch.equal(_pixels(tmp_path / "a" / "d0_aug0.png"), _pixels(tmp_path / "a" / "d0_aug1.png"))


@pytest.mark.parametrize(("batch_size", "calls"), [(256, 2), (4, 6)])
def test_apply_calls_the_policy_once_per_same_shape_batch(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         batch_size: int, calls: int) -> None:
    """7 grey 16x16 digits, then 3 RGB 30x40 photos; batch_size 4 with 2 copies is 2 sources per call."""
    sizes: list[int] = []
    original = BatchAugment.__call__

    def counting(self: BatchAugment, images: torch.Tensor, **kwargs: object) -> torch.Tensor:
        sizes.append(images.shape[0])
        return original(self, images, **kwargs)

    monkeypatch.setattr(BatchAugment, "__call__", counting)
    apply_policy_to_path(NOOP, tree / "digits", tmp_path / "d", copies=2, batch_size=batch_size)
    apply_policy_to_path(NOOP, tree / "photos" / "nested", tmp_path / "p", copies=2, batch_size=batch_size)
    assert len(sizes) == calls
    assert sum(sizes) == (7 + 3) * 2 and max(sizes) <= max(batch_size, 2)


def test_a_noop_policy_round_trips_pixels(tree: Path, tmp_path: Path) -> None:
    apply_policy_to_path(NOOP, tree, tmp_path, copies=1)
    for name in READABLE:
        assert torch.equal(_pixels(tmp_path / f"{name.rsplit('.', 1)[0]}_aug0.png"), _pixels(tree / name))


def test_single_image_input(tree: Path, tmp_path: Path) -> None:
    source = tree / "photos" / "nested" / "p1.JPG"
    report = apply_policy_to_path(load_policy("randaugment"), source, tmp_path / "out", copies=3, seed=0)
    assert report.written == [tmp_path / "out" / f"p1_aug{k}.png" for k in range(3)]
    assert report.skipped == []
    assert all(_pixels(p).shape == (3, 30, 40) for p in report.written)


def test_progress_counts_every_image(tree: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    apply_policy_to_path(NOOP, tree, tmp_path, batch_size=3, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(IMAGES), len(IMAGES))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_outputs_inside_the_input_folder_are_not_read_again(tree: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    PIL.Image.fromarray(_digits(1)[0]).save(source / "a.png")
    for _ in range(2):
        report = apply_policy_to_path(NOOP, source, source / "aug", overwrite=True)
        assert [p.relative_to(source).as_posix() for p in report.written] == ["aug/a_aug0.png"]
    with pytest.raises(AutoaugError, match="must not be the input folder"):
        apply_policy_to_path(NOOP, source, source)


def test_same_stem_different_extensions_do_not_overwrite_each_other(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    digits = _digits(2)
    PIL.Image.fromarray(digits[0]).save(source / "a.png")
    PIL.Image.fromarray(digits[1]).save(source / "a.bmp")
    report = apply_policy_to_path(NOOP, source, tmp_path / "out")
    assert sorted(p.name for p in report.written) == ["a_bmp_aug0.png", "a_png_aug0.png"]
    assert torch.equal(_pixels(tmp_path / "out" / "a_bmp_aug0.png")[0], torch.from_numpy(digits[1]))


def test_missing_input_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(AutoaugError, match="no such file or directory"):
        apply_policy_to_path(NOOP, tmp_path / "missing", tmp_path / "out")


def test_grid_shape_and_first_column_holds_the_upscaled_originals(tree: Path) -> None:
    images = load_image_batch(tree / "photos", limit=3)  # 3 RGB photos (the corrupt one skipped)
    assert images.shape == (3, 3, 30, 40)
    grid = augmentation_grid(load_policy("randaugment"), images, copies=4, seed=0, scale=2)
    assert grid.dtype == torch.uint8
    assert grid.shape == (3, 3 * (60 + GUTTER) + GUTTER, 5 * (80 + GUTTER) + GUTTER)
    for row in range(3):
        top, left = cell_origin(row, 0, 30, 40, 2)
        upscaled = images[row].repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
        assert torch.equal(grid[:, top:top + 60, left:left + 80], upscaled)
        top, left = cell_origin(row, 1, 30, 40, 2)
        assert not torch.equal(grid[:, top:top + 60, left:left + 80], upscaled)  # Cutout always changes it
    assert (grid[:, :GUTTER] == 255).all() and (grid[:, :, 80 + GUTTER:80 + 2 * GUTTER] == 255).all()
    assert torch.equal(grid, augmentation_grid(load_policy("randaugment"), images, copies=4, seed=0, scale=2))


def test_grid_of_digits_saves_as_a_png(tmp_path: Path) -> None:
    images = digits_images(2)
    assert images.shape == (2, 1, 32, 32) and images.max() > 200
    grid = augmentation_grid(NOOP, images, copies=1, seed=0, scale=1)
    path = save_png(grid, tmp_path / "sub" / "grid.png")
    assert torch.equal(read_image(path), grid)


# --------------------------------------------------------------------------- schedules and the command line
SCHEDULE = load_policy(Path(__file__).parent / "golden" / "policy_v1_schedule.json")


def _phase_alone(k: int) -> Policy:
    return SCHEDULE.model_copy(update={"augment": SCHEDULE.augment.phases[k].augment})


def _outputs(folder: Path) -> dict[str, torch.Tensor]:
    return {p.relative_to(folder).as_posix(): _pixels(p) for p in sorted(folder.rglob("*.png"))}


def test_apply_writes_one_set_per_phase_each_the_phase_alone(tree: Path, tmp_path: Path) -> None:
    report = apply_policy_to_path(SCHEDULE, tree / "digits", tmp_path / "out", copies=2, seed=4)
    folders = [tmp_path / "out" / "phase1_0.00-0.50", tmp_path / "out" / "phase2_0.50-1.00"]
    assert report.folders == folders and len(report.written) == 2 * 7 * 2
    sets = [_outputs(folder) for folder in folders]
    for k in range(2):
        apply_policy_to_path(_phase_alone(k), tree / "digits", tmp_path / f"alone{k}", copies=2, seed=4)
        assert sets[k].keys() == _outputs(tmp_path / f"alone{k}").keys()
        assert all(torch.equal(sets[k][name], image) for name, image in _outputs(tmp_path / f"alone{k}").items())
    assert any(not torch.equal(sets[0][name], sets[1][name]) for name in sets[0])
    late = apply_policy_to_path(SCHEDULE, tree / "digits", tmp_path / "late", copies=2, seed=4, progress=0.8)
    assert late.folders == [tmp_path / "late"]
    assert all(torch.equal(image, sets[1][name]) for name, image in _outputs(tmp_path / "late").items())


def test_apply_refuses_a_folder_that_holds_files_unless_told(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    apply_policy_to_path(FLIP, tree / "digits", tmp_path / "out")  # an empty folder is fine
    with pytest.raises(AutoaugError, match="out: the output folder is not empty .*--overwrite"):
        apply_policy_to_path(NOOP, tree / "digits", tmp_path / "out")
    assert torch.equal(_pixels(tmp_path / "out" / "d0_aug0.png"), _pixels(tree / "digits" / "d0.png").flip(-1))
    apply_policy_to_path(NOOP, tree / "digits", tmp_path / "out", overwrite=True)
    assert torch.equal(_pixels(tmp_path / "out" / "d0_aug0.png"), _pixels(tree / "digits" / "d0.png"))
    with pytest.raises(AutoaugError, match=r"progress .* in \[0, 1\]; got 1.2"):
        apply_policy_to_path(NOOP, tree / "digits", tmp_path / "other", progress=1.2)


def test_grid_draws_a_block_of_rows_per_phase(tree: Path) -> None:
    images = load_image_batch(tree / "digits", limit=3)
    grid = augmentation_grid(SCHEDULE, images, copies=2, seed=0, scale=1, progress=phase_starts(SCHEDULE))
    assert phase_starts(SCHEDULE) == [0.0, 0.5] and phase_starts(FLIP) == [0.0]
    rows = grid.shape[1] - GUTTER
    assert rows == 6 * (16 + GUTTER)
    for k in range(2):
        alone = augmentation_grid(_phase_alone(k), images, copies=2, seed=0, scale=1)
        block = grid[:, k * 3 * (16 + GUTTER):(k + 1) * 3 * (16 + GUTTER) + GUTTER]
        assert torch.equal(block, alone)
    assert not torch.equal(grid[:, :rows // 2], grid[:, rows // 2:rows])


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from autoaug_cli import app as cli_app

    with pytest.raises(SystemExit) as done:
        cli_app.main(args)
    out = capsys.readouterr()
    return done.value.code or 0, out.out, out.err


def test_apply_command_counts_what_it_wrote_and_refuses_to_overwrite(tree: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = ["apply", "cropflip", "--input", str(tree / "digits"), "--output", str(tmp_path / "out"), "--copies", "3"]
    code, out, _ = _cli(args, capsys)
    assert (code, out.splitlines()[-1]) == (0, "wrote 21 images, skipped 0")
    assert len(list((tmp_path / "out").rglob("*.png"))) == 21
    code, out, err = _cli(args, capsys)
    assert code == 2 and err.count("\n") == 1 and "not empty (--overwrite" in err
    assert _cli(args + ["--overwrite"], capsys)[:2] == (0, "wrote 21 images, skipped 0\n")
    single = ["apply", "cropflip", "--input", str(tree / "digits" / "d0.png"), "--output", str(tmp_path / "one")]
    assert _cli(single, capsys)[1] == "wrote 1 image, skipped 0\n"


def test_apply_and_show_commands_cover_every_phase(tree: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    policy = str(Path(__file__).parent / "golden" / "policy_v1_schedule.json")
    code, out, _ = _cli(["apply", policy, "--input", str(tree / "digits"), "--output", str(tmp_path / "a")], capsys)
    assert code == 0 and out.startswith("wrote 14 images (2 phases: ")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["phase1_0.00-0.50", "phase2_0.50-1.00"]
    late = ["apply", policy, "--input", str(tree / "digits"), "--output", str(tmp_path / "b"), "--progress", "0.8"]
    assert _cli(late, capsys)[1] == "wrote 7 images, skipped 0\n"
    code, out, _ = _cli(["show", policy, "--grid", str(tmp_path / "grid.png"), "--rows", "2", "--copies", "3"], capsys)
    assert code == 0 and "4 rows (a block of 2 per phase, 2 phases)" in " ".join(out.split())  # rich wraps lines
    with PIL.Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (4 * (128 + GUTTER) + GUTTER, 4 * (128 + GUTTER) + GUTTER)
