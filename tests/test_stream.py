import torch
from torch.utils.data import DataLoader

from captcha_stream.data.stream import CaptchaStream, CtcCollate
from captcha_stream.model.codec import Codec


def labels_of(loader):
    out = []
    for batch in loader:
        out.extend(batch.labels)
    return out


def images_of(loader):
    return torch.cat([b.images for b in loader])


def test_stream_shapes_and_collate(small_data):
    codec = Codec(small_data.charset)
    loader = DataLoader(CaptchaStream(small_data, seed=1, num_samples=6), batch_size=3, collate_fn=CtcCollate(codec))
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b.images.shape == (3, 1, 60, 160) and b.images.dtype == torch.uint8
    assert b.target_lengths.tolist() == [len(label) for label in b.labels]
    assert b.targets.tolist() == [i for label in b.labels for i in codec.encode(label)]


def test_two_workers_never_repeat_and_match_single_process(small_data):
    codec = Codec(small_data.charset)
    ds = CaptchaStream(small_data, seed=3, num_samples=16, block_size=4)
    one = DataLoader(ds, batch_size=4, collate_fn=CtcCollate(codec), num_workers=0)
    two = DataLoader(ds, batch_size=4, collate_fn=CtcCollate(codec), num_workers=2)
    imgs1, imgs2 = images_of(one), images_of(two)
    # Blocks of batch size make the order independent of the worker count.
    assert torch.equal(imgs1, imgs2)
    flat = imgs2.flatten(1)
    assert len({row.numpy().tobytes() for row in flat}) == 16


def test_worker_partition_is_disjoint(small_data):
    ds = CaptchaStream(small_data, seed=0, num_samples=50, block_size=3)
    parts = [list(ds.indices(w, 3)) for w in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(50))


def test_ranks_get_different_streams(small_data):
    a = next(iter(CaptchaStream(small_data, seed=0, rank=0)))
    b = next(iter(CaptchaStream(small_data, seed=0, rank=1)))
    a2 = next(iter(CaptchaStream(small_data, seed=0, rank=0)))
    assert not torch.equal(a[0], b[0])
    assert torch.equal(a[0], a2[0]) and a[1] == a2[1]


def test_start_resumes_the_sequence(small_data):
    full = list(CaptchaStream(small_data, seed=2, num_samples=6))
    tail = list(CaptchaStream(small_data, seed=2, num_samples=6, start=4))
    assert [lbl for _, lbl in tail] == [lbl for _, lbl in full[4:]]
    assert torch.equal(tail[0][0], full[4][0])


def test_labels_in_bounds_over_many_samples(small_data):
    for _, label in CaptchaStream(small_data, seed=9, num_samples=200):
        assert small_data.min_length <= len(label) <= small_data.max_length
        assert set(label) <= set(small_data.charset)


def test_echo_reuses_renders_with_different_jitter(small_data):
    from dataclasses import replace

    data = replace(small_data, echo=3)
    items = list(CaptchaStream(data, seed=4, num_samples=6))
    labels = [label for _, label in items]
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] == labels[5]
    assert not torch.equal(items[0][0], items[1][0])  # echoes differ
    again = list(CaptchaStream(data, seed=4, num_samples=6, start=4))
    assert torch.equal(again[0][0], items[4][0])  # and are reproducible from any start
    assert items[0][0].shape == (1, 60, 160) and items[0][0].dtype == torch.uint8


def test_augment_jitters_the_chosen_share_reproducibly(small_data):
    from dataclasses import replace

    plain = list(CaptchaStream(small_data, seed=5, num_samples=40))
    half = list(CaptchaStream(replace(small_data, augment=0.5), seed=5, num_samples=40))
    changed = [not torch.equal(a[0], b[0]) for a, b in zip(plain, half)]
    assert [a[1] for a in plain] == [b[1] for b in half]  # same captchas, some of them moved
    assert 10 <= sum(changed) <= 30
    every = list(CaptchaStream(replace(small_data, augment=1.0), seed=5, num_samples=40))
    assert all(not torch.equal(a[0], b[0]) for a, b in zip(plain, every))
    # The choice and the jitter follow the index, not the iteration: a stream started at
    # sample 30 (a resumed run) gives the same samples.
    tail = list(CaptchaStream(replace(small_data, augment=0.5), seed=5, num_samples=40, start=30))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(tail, half[30:]))


def test_folder_stream_augments_too(tmp_path, small_data):
    from captcha_stream.data.folder import FolderDataset
    from captcha_stream.data.frozen import export_set
    from captcha_stream.data.stream import FolderStream

    export_set(tmp_path / "set", 4, small_data, seed=3, workers=1, progress=False, log=lambda _: None)
    folder = FolderDataset(tmp_path / "set", small_data)
    plain = [x for x, _ in zip(FolderStream(folder, seed=1), range(8))]
    moved = [x for x, _ in zip(FolderStream(folder, seed=1, augment=1.0), range(8))]
    assert [a[1] for a in plain] == [b[1] for b in moved]
    assert all(not torch.equal(a[0], b[0]) for a, b in zip(plain, moved))


def test_quiet_curriculum_draws_the_first_images_without_noise(small_data):
    from captcha_stream.data.images import preprocess
    from captcha_stream.data.render import Renderer, derive_seed

    noisy = list(CaptchaStream(small_data, seed=4, num_samples=6))
    quiet = list(CaptchaStream(small_data, seed=4, num_samples=6, quiet_images=3))
    # Same labels throughout; the first three images lose the noise, the rest are the scheme's own.
    assert [lbl for _, lbl in quiet] == [lbl for _, lbl in noisy]
    twin = Renderer(small_data, noise=False)
    for i, (image, _) in enumerate(quiet):
        if i < 3:
            expected, _ = twin.sample_at(derive_seed(4, 0), i)
            assert not torch.equal(image, noisy[i][0])
            assert torch.equal(image, preprocess(expected, small_data))
        else:
            assert torch.equal(image, noisy[i][0])
    # By index: a resumed stream (start=2) and two workers split it the same way.
    tail = list(CaptchaStream(small_data, seed=4, num_samples=6, start=2, quiet_images=3))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(tail, quiet[2:], strict=True))
    codec = Codec(small_data.charset)
    ds = CaptchaStream(small_data, seed=4, num_samples=6, block_size=2, quiet_images=3)
    two = DataLoader(ds, batch_size=2, collate_fn=CtcCollate(codec), num_workers=2)
    assert torch.equal(images_of(two), torch.stack([img for img, _ in quiet]))
