"""A user's own ONNX encoder, fed and read as its EncoderSpec says, with its optional text model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imagesearch_pg.vision import transforms
from imagesearch_pg.vision.encoder_spec import EncoderSpec, EncoderSpecError
from imagesearch_pg.vision.encoders.base import Encoded, Encoder
from imagesearch_pg.vision.inference_model import InferenceModel


class OnnxEncoder(Encoder):
    """A user's ONNX model, fed and read as its EncoderSpec says."""

    def __init__(self, spec: EncoderSpec, cache_dir: Path, threads: int = 2, session=None):
        super().__init__(cache_dir, threads, session)
        self.spec = spec
        self.name, self.dim = spec.name, spec.dim
        self._text: OnnxTextEncoder | None = None

    def model_path(self) -> Path:
        return self.spec.onnx

    def encode(self, images: list[np.ndarray]) -> Encoded:
        spec = self.spec
        width, height = spec.input_size
        resized = [transforms.resize(im, width, height) for im in images]
        if spec.channel_order == "BGR":
            resized = [im[..., ::-1] for im in resized]
        mean = np.asarray(spec.mean, np.float32) / spec.scale
        std = np.asarray(spec.std, np.float32) / spec.scale
        batch = transforms.to_nchw(resized, mean, std)  # (x*scale - mean) / std == (x - mean/scale) / (std/scale)
        if spec.layout == "NHWC":
            batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        input_name = spec.input_name or self.session.get_inputs()[0].name
        (output,) = self.session.run([spec.output], {input_name: batch})
        output = np.asarray(output, np.float32).reshape(len(images), -1)
        if output.shape[1] != spec.dim:
            raise EncoderSpecError(f"encoder {spec.name}: output {spec.output} has {output.shape[1]} values, spec says {spec.dim}")
        return Encoded(transforms.l2_normalize(output), None)

    def check(self) -> None:
        """Run the model once on a grey picture (and the text model on a phrase): the spec must match what
        the models take and give."""
        try:
            self.predict([np.full((64, 64, 3), 128, np.uint8)])
        except EncoderSpecError:
            raise
        except Exception as exc:  # onnxruntime reports wrong names, shapes and types in its own exceptions
            raise EncoderSpecError(f"encoder {self.spec.name} could not run {self.spec.onnx}: {exc}") from None
        if self.spec.text is not None:
            try:
                self.text_encoder().predict("a photo of a red shoe")
            except EncoderSpecError:
                raise
            except Exception as exc:
                raise EncoderSpecError(
                    f"encoder {self.spec.name} could not run its text model {self.spec.text.onnx}: {exc}"
                ) from None

    def text_encoder(self) -> "OnnxTextEncoder | None":
        if self.spec.text is None:
            return None
        if self._text is None:
            self._text = OnnxTextEncoder(self.spec, self.cache_dir, self.threads)
        return self._text


class OnnxTextEncoder(InferenceModel):
    """The text side of a user's encoder: tokenizer (Hugging Face `tokenizers` file) + ONNX model, giving
    vectors in the pictures' space."""

    def __init__(self, spec: EncoderSpec, cache_dir: Path, threads: int = 2, session=None):
        super().__init__(cache_dir, threads, session)
        self.spec = spec
        self._tokenizer = None

    def model_path(self) -> Path:
        return self.spec.text.onnx

    def _predict(self, text: str) -> np.ndarray:
        from tokenizers import Tokenizer

        text_spec = self.spec.text
        if self._tokenizer is None:
            tokenizer = Tokenizer.from_file(str(text_spec.tokenizer))
            tokenizer.enable_truncation(text_spec.max_length)
            tokenizer.enable_padding(length=text_spec.max_length)
            self._tokenizer = tokenizer
        tokens = self._tokenizer.encode(text)
        session = self.session
        feed = {text_spec.input_name or session.get_inputs()[0].name: np.asarray([tokens.ids], np.int64)}
        if text_spec.attention_mask:
            feed[text_spec.attention_mask] = np.asarray([tokens.attention_mask], np.int64)
        (output,) = session.run([text_spec.output], feed)
        output = np.asarray(output, np.float32).reshape(1, -1)
        if output.shape[1] != self.spec.dim:
            raise EncoderSpecError(
                f"encoder {self.spec.name}: text output {text_spec.output} has {output.shape[1]} values, spec says {self.spec.dim}"
            )
        return transforms.l2_normalize(output)[0]
