"""The audio domain: speech enhancement (magnitude and phase, MP-SENet-style) and voice/language
identification on Debian's Asterisk prompts, with librosa for the signal processing."""
from core.domain import Domain
from domains.audio.tasks import ClassifyTask, EnhanceTask


class AudioDomain(Domain):
    name = "audio"
    description = "speech recordings -> enhanced speech, or voice/language labels"
    tasks = (EnhanceTask, ClassifyTask)
    requirements = ("librosa", "soundfile", "soxr", "pesq", "pystoi", "speechmos", "onnxruntime", "noisereduce",
                    "pyroomacoustics")

    def self_check(self) -> str:
        """librosa's STFT round trip and PESQ's ceiling on a synthetic vowel; the prompt packages' presence."""
        import librosa
        import numpy as np

        from domains.audio.corpus import DEFAULT_ROOT, INSTALL_HINT
        from domains.audio.metrics import pesq_score
        t = np.arange(16000) / 8000
        x = (0.3 * sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8)) * (np.sin(2 * np.pi * t) > 0))
        back = librosa.istft(librosa.stft(x, n_fft=256, hop_length=64), hop_length=64, length=len(x))
        score = pesq_score(x, back, 8000)
        if not np.allclose(back, x, atol=1e-6) or score < 4.4:
            raise RuntimeError(f"librosa STFT round trip or PESQ is off (PESQ of a clean signal: {score:.2f})")
        prompts = "prompts found" if DEFAULT_ROOT.is_dir() else f"NO prompts: {INSTALL_HINT}"
        return f"librosa STFT round trip, PESQ {score:.2f}; {prompts}"

    def check_config(self, values):
        d, problems = values["data"], []
        if d["val_fraction"] + d["test_fraction"] >= 1:
            problems.append("data.val_fraction + data.test_fraction: must leave prompts for training (sum < 1)")
        if d["source"] == "asterisk" and d["sample_rate"] not in (8000, 16000):
            problems.append(f"data.sample_rate: the prompt packages come at 8000 (.wav) or 16000 (G.722), not "
                            f"{d['sample_rate']}; other rates are for your own recordings (data.source=folders)")
        if d["source"] == "folders" and values["task"] == "enhance":
            problems.append("data.source=folders: your labelled recordings train classification only (task=classify); "
                            "enhancement trains on clean prompts it mixes noise into (data.source=asterisk)")
        if d["group_pattern"]:
            import re
            try:
                if re.compile(d["group_pattern"]).groups < 1:
                    problems.append(f"data.group_pattern: {d['group_pattern']!r} has no (group) naming the recordings "
                                    "that stay together, e.g. '^([0-9a-f]+)_nohash_'")
            except re.error as err:
                problems.append(f"data.group_pattern: {d['group_pattern']!r} is not a regular expression ({err})")
        if sum(d["music_folds"]) >= 1:
            problems.append("data.music_folds: the train and validation parts must leave music for testing (sum < 1)")
        return problems
