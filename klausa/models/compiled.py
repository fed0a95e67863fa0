"""EmbeddingGemma's transformer compiled ahead of time for this machine (torch AOTInductor).

Measured on the 2-core machine of this project, one question at a time: in bfloat16 (a CPU
with AVX-512 BF16) the transformer takes 43 ms run op by op, 23 ms compiled, and a batch of 8
passages 236 against 161 ms; in float32 on AVX2 alone (emulated) 81 against 58 ms. The
package holds only the generated kernels (3 MB): the weights stay those of the loaded model
(``load_constants(..., user_managed=True)``), so it costs no memory.

Compiling takes about a minute of CPU, so no one waits for it: the first process that runs
the model starts a builder process (``main`` below) in the background (niced, one at a time
across processes: a lock file) and goes on with the model as it is; every process switches
to the package when it appears, after checking on a probe text that both give the same
vectors. The package is keyed by everything its code depends
on (torch, transformers, Python, the CPU's instruction set and any limit set on it, the
model's config and dtype), so a models folder copied to another machine builds its own. Any
failure leaves the model as it is, with one warning.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from klausa.models.base import cpu_info, torch_capability_limit

log = logging.getLogger(__name__)

PACKAGE = "transformer.pt2"
#: Bump when what is exported changes (the wrapper below, the dynamic shapes).
EXPORT_VERSION = 2
MAX_BATCH = 1024
#: The builder process (``-m klausa.models.compiled`` would import this module twice).
BUILDER = "import sys; from klausa.models.compiled import main; sys.exit(main(sys.argv[1:]))"
#: How often a process waiting for the package looks for it.
LOOK_EVERY_S = 1.0
#: The compiler's target for the instruction set torch is limited to (``torch_capability_limit``;
#: "default" is torch's scalar code): otherwise it compiles for every instruction the machine has.
MARCH_OF_CAPABILITY = {"avx2": "x86-64-v3", "default": "x86-64"}


def target_march() -> str:
    """The instruction set the package is compiled for ("": all this machine has)."""
    return os.environ.get("TORCHINDUCTOR_CPP_MARCH") or MARCH_OF_CAPABILITY.get(
        torch_capability_limit(), "")


def compiler_env() -> dict[str, str]:
    """What the builder process adds to its environment."""
    march = target_march()
    return {"TORCHINDUCTOR_CPP_MARCH": march} if march else {}


def build_key(model_folder: Path, dtype: str = "bfloat16") -> str:
    import torch
    import transformers

    flags = cpu_info().get("flags") or platform.processor()
    parts = [str(EXPORT_VERSION), torch.__version__, transformers.__version__,
             platform.python_version(), platform.machine(), flags,
             str(_state_layer(model_folder)), (model_folder / "config.json").read_text("utf-8"),
             dtype, torch_capability_limit(), target_march()]
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def package_path(model_folder: Path, dtype: str = "bfloat16") -> Path:
    return model_folder / "compiled" / build_key(model_folder, dtype) / PACKAGE


def _wrapper(text_model, state_layer: int | None = None):  # type: ignore[no-untyped-def]
    """What is exported: the transformer from word embeddings on (the int8 table lookup
    stays outside, so its 200 MB are not copied into the graph as constants); with
    ``state_layer``, also that layer's input (the reader's token states)."""
    import torch

    class FromEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text_model = text_model

        def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor):
            if state_layer is None:
                return self.text_model(inputs_embeds=inputs_embeds,
                                       attention_mask=attention_mask).last_hidden_state
            out = self.text_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  output_hidden_states=True)
            return out.last_hidden_state, out.hidden_states[state_layer]

    return FromEmbeddings().eval()


def _spec(model_folder: Path):  # type: ignore[no-untyped-def]
    """The bundled model this folder holds (None: another model)."""
    from klausa.models import EMBEDDING_MODELS

    return next((s for s in EMBEDDING_MODELS.values() if s.name == model_folder.name), None)


def _state_layer(model_folder: Path) -> int | None:
    spec = _spec(model_folder)
    return spec.state_layer if spec else None


@contextmanager
def _build_lock(lock_file: Path) -> Iterator[bool]:
    """The builders' lock, taken without waiting: True while this process holds it, False
    when another process does."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_is_free(lock_file: Path) -> bool:
    with _build_lock(lock_file) as taken:
        return taken


class CompiledTransformer:
    """Runs a loaded model's transformer (bfloat16 or float32) through the compiled package
    once there is one. ``poll()`` is called by the model thread before each batch; it is
    cheap. ``probe``: the text both must embed alike before the package is used (the model's
    own prompt and a question)."""

    #: A question to probe with, behind the model's own query prompt.
    PROBE = "can I ask for my data to be deleted?"

    def __init__(self, model_folder: Path, model: Any, *, probe: str = PROBE,
                 build: bool = True) -> None:
        self.folder = model_folder
        self.model = model
        self.probe = probe
        self.build = build
        self.dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self._target: Path | None = None
        self.active = False
        self._off = False
        self._loading: threading.Thread | None = None
        self._loaded: Any = None
        self._next_look = 0.0
        self._threads: int | None = None  # the model's torch threads while a build runs

    @property
    def target(self) -> Path:
        """Where this machine's package is (or will be)."""
        if self._target is None:
            self._target = package_path(self.folder, self.dtype)
        return self._target

    def poll(self) -> bool:
        """True when the compiled transformer is in use. Never raises: any trouble (a
        read-only models folder, no compiler) leaves the model as it is."""
        if self.active or self._off:
            return self.active
        try:
            return self._poll()
        except Exception as error:
            log.warning("not using a compiled transformer: %s", error)
            self._off = True
            self._share_cores(False)
            return False

    def _poll(self) -> bool:
        if self._loaded is not None:
            self._attach(self._loaded)
            self._loaded = None
            return self.active
        now = time.monotonic()
        if self._loading is not None or now < self._next_look:
            return False
        self._next_look = now + LOOK_EVERY_S
        if self.target.is_file():
            self._share_cores(False)
            # Unpacking and loading the library takes ~2 s and runs no model code: off the
            # model thread, so questions go on meanwhile.
            self._loading = threading.Thread(target=self._load, name="klausa-compiled-load",
                                             daemon=True)
            self._loading.start()
        elif (self.target.parent / "failed").is_file():
            self._share_cores(False)
            log.warning("not using a compiled transformer: its build failed (%s); delete %s "
                        "to try again", (self.target.parent / "failed").read_text().strip(),
                        self.target.parent)
            self._off = True
        else:
            building = not _lock_is_free(self.target.parent / "lock")
            if self.build and not building:
                self._start_build()
                building = True
            self._share_cores(building)
        return False

    def _share_cores(self, building: bool) -> None:
        """While a build runs, the model uses one thread: with two, each question waited for
        the core the builder held (1.3 s instead of 45 ms, measured on two cores, the builder
        at SCHED_IDLE)."""
        import torch

        if building and self._threads is None:
            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)
        elif not building and self._threads is not None:
            torch.set_num_threads(self._threads)
            self._threads = None

    def _start_build(self) -> None:
        self.build = False  # one attempt per process; later polls only look for the result
        log.info("compiling the embedding model for this machine in the background "
                 "(about a minute; questions are answered meanwhile)")
        # One thread, for compiling too: with two, questions asked meanwhile took 1.2 s
        # instead of 45 ms (measured, the builder at nice 10).
        single = {"OMP_NUM_THREADS": "1", "TORCHINDUCTOR_COMPILE_THREADS": "1"}
        with open(self.target.parent / "build.log", "a") as out:
            subprocess.Popen(
                [sys.executable, "-c", BUILDER, str(self.folder), self.dtype],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=os.environ | single | compiler_env(),
                start_new_session=True,  # outlives a short-lived CLI process
            )

    def _load(self) -> None:
        try:
            from torch._inductor.package import load_package

            self._loaded = load_package(str(self.target))
        except Exception as error:  # a broken package: keep the model as it is
            log.warning("not using the compiled transformer %s: %s", self.target, error)
            self._off = True
        finally:
            self._loading = None

    def _attach(self, runner: Any) -> None:
        import torch

        text_model = self.model[0].auto_model
        state_layer = _state_layer(self.folder)
        wrapper = _wrapper(text_model, state_layer)
        tensors = dict(wrapper.named_parameters()) | dict(wrapper.named_buffers())
        try:
            runner.load_constants({name: tensors[name] for name in runner.get_constant_fqns()},
                                  check_full_update=True, user_managed=True)
            embed = text_model.get_input_embeddings()
            features = self.model.tokenizer([self.probe], return_tensors="pt")
            with torch.inference_mode():
                expected = wrapper(embed(features["input_ids"]), features["attention_mask"])
                found = runner(embed(features["input_ids"]), features["attention_mask"])
            # Both outputs (the last states and the reader's) must agree.
            pairs = zip(expected, found, strict=True) if state_layer is not None else [
                (expected, found)]
            similarity = min(torch.nn.functional.cosine_similarity(
                e.float().flatten(), f.float().flatten(), dim=0).item() for e, f in pairs)
            if similarity < 0.999:
                raise ValueError(f"its output differs from the model's (cosine {similarity:.4f})")
        except Exception as error:
            log.warning("not using the compiled transformer %s: %s", self.target, error)
            self._off = True
            return
        eager = text_model.forward

        def forward(input_ids=None, attention_mask=None, **options):  # type: ignore[no-untyped-def]
            if input_ids is None or attention_mask is None or options.get("output_hidden_states"):
                return eager(input_ids=input_ids, attention_mask=attention_mask, **options)
            from transformers.modeling_outputs import BaseModelOutput

            try:
                hidden = runner(embed(input_ids), attention_mask)
                if state_layer is not None:
                    hidden, states = hidden
                    tap = getattr(text_model, "klausa_state_tap", None)
                    if tap is not None:
                        tap.states = states
            except RuntimeError as error:  # a shape outside what was compiled
                log.warning("compiled transformer failed (%s); running the model as it is",
                            error)
                return eager(input_ids=input_ids, attention_mask=attention_mask, **options)
            return BaseModelOutput(last_hidden_state=hidden)

        # On this model instance only: its weights, tokenizer and pooling are unchanged.
        text_model.forward = forward
        self.active = True
        log.info("embedding model: compiled transformer in use (%s)", self.target.parent.name)

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """The model run op by op for as long as this lasts (to compare against); on the
        model thread."""
        text_model = self.model[0].auto_model
        forward = text_model.__dict__.pop("forward", None)
        try:
            yield
        finally:
            if forward is not None:
                text_model.forward = forward

    def wait(self, timeout_s: float) -> bool:
        """Block until the compiled transformer is in use or ``timeout_s`` has passed (for
        benchmarks, which measure the model as a server runs it). Call on the model thread."""
        deadline = time.monotonic() + timeout_s
        while not self.poll() and not self._off and time.monotonic() < deadline:
            time.sleep(0.5)
        return self.active


def build(model_folder: Path, dtype: str = "bfloat16") -> Path:
    """Export and compile the transformer of the model in ``model_folder``, in ``dtype`` (in
    the builder process: the model is loaded here, on its own)."""
    import torch

    from klausa.models.loading import load_sentence_transformer

    target = package_path(model_folder, dtype)
    # The bundled model's compact word table, when the folder has one.
    spec = _spec(model_folder)
    model = load_sentence_transformer(
        str(model_folder), spec.compact_table if spec else None).to(getattr(torch, dtype))
    wrapper = _wrapper(model[0].auto_model, _state_layer(model_folder))
    # Example inputs: only their shapes matter (batch and length are dynamic).
    features = model.tokenizer(["a clause of a policy", CompiledTransformer.PROBE],
                               padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    tokens = torch.export.Dim("tokens", min=2, max=max(model.max_seq_length, 8))
    with torch.inference_mode():
        embeds = model[0].auto_model.get_input_embeddings()(features["input_ids"])
        program = torch.export.export(
            wrapper, (embeds, features["attention_mask"]),
            dynamic_shapes=({0: batch, 1: tokens}, {0: batch, 1: tokens}),
        )
    partial = target.with_name(f".{os.getpid()}.{PACKAGE}")
    torch._inductor.aoti_compile_and_package(
        program, package_path=str(partial),
        inductor_configs={"aot_inductor.package_constants_in_so": False},
    )
    os.replace(partial, target)  # whole or absent: never a half-written package
    return target


def _yield_to_everything_else() -> None:
    """Run only on a core that would otherwise idle (SCHED_IDLE; else the lowest nice), so a
    server on the same cores keeps answering while this compiles."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    dtype = argv[1] if len(argv) > 1 else "bfloat16"
    target = package_path(folder, dtype)
    with _build_lock(target.parent / "lock") as taken:
        if not taken or target.is_file():
            return 0  # another process is building it, or has built it
        _yield_to_everything_else()
        started = time.monotonic()
        try:
            build(folder, dtype)
        except Exception as error:
            (target.parent / "failed").write_text(f"{type(error).__name__}: {error}\n"[:2000])
            print(f"compiling {folder.name} failed: {error}", file=sys.stderr)
            return 1
        print(f"compiled {folder.name} into {target} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
