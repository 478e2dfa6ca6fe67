"""IP-Adapter FaceID (Ye et al. 2023; tencent-ailab/IP-Adapter, ip_adapter/ip_adapter_faceid.py):
zero-shot personalization of SD 1.5 from a face-recognition embedding. The embedding is
projected to 4 extra cross-attention tokens (MLPProjModel) read by decoupled image
cross-attention (to_k_ip/to_v_ip), and a LoRA (rank 128) on every attention layer.

personalize() only encodes the reference face (attacks/face_ref.py); generate() loads the
checkpoint through diffusers' `load_ip_adapter` - which converts FaceID keys into
IPAdapterFaceIDImageProjection + IPAdapterAttnProcessor2_0 and the LoRA into a peft adapter
"faceid_0" - and samples with `ip_adapter_image_embeds` = [zero embedding, reference]
(the negative branch is the zero embedding, as IPAdapterFaceID.get_image_embeds does).

Reference embedding: the mean of the unit-norm embeddings of every reference image with
a detected face, re-normalised. The authors' example uses one image; the attacker of the
benchmark holds the whole published set, and averaging makes the attack less dependent on
one unlucky photo while staying on the unit sphere the adapter was trained on.
"""

from __future__ import annotations

from bench import sd
from bench.errors import BenchError
from bench.models import load_sd, resolve
from bench.params import Needs, Param
from bench.plugin import Attack

from attacks import face_ref

REPO = "tencent-ailab/IP-Adapter ip_adapter/ip_adapter_faceid.py"
README = "h94/IP-Adapter-FaceID model card (usage: FaceAnalysis('buffalo_l'), det_size 640, normed_embedding)"


class IPAdapterFaceID(Attack):
    name = "ipa-faceid"
    links = {"paper": "https://arxiv.org/abs/2308.06721", "code": "https://github.com/tencent-ailab/IP-Adapter"}
    aliases = ("ip-adapter-faceid",)
    summary = "Zero-shot: IP-Adapter FaceID (SD 1.5) conditioned on the subject's face embedding."
    version = "1"
    zero_shot = True
    params = [
        Param("base_model", str, "stable-diffusion-v1-5/stable-diffusion-v1-5", tiny="",
              source="methods.md Attacks: FaceID on an SD 1.5 base (the checkpoint is for SD 1.5's UNet); tiny: '' = the cell's base",
              help="hub id, local diffusers folder or zoo:<name>; '' uses the cell's base model"),
        Param("adapter", str, "h94/IP-Adapter-FaceID", tiny="zoo:tiny-ipa-faceid", source=README,
              help="hub id, local folder or zoo:<name> holding weight_name"),
        Param("weight_name", str, "ip-adapter-faceid_sd15.bin", tiny="ip-adapter-faceid_tiny.safetensors", source=README),
        Param("scale", float, 1.0, source=REPO + ": generate(scale=1.0), the image-prompt weight", ge=0),
        Param("dtype", str, "fp16", tiny="fp32", choices=sd.DTYPES, source=README + ": torch_dtype=torch.float16 (CUDA only; CPU runs fp32)",
              help="weights' precision for generation on CUDA (memory)"),
        Param("face_encoder", str, "insightface-buffalo_l", tiny="dlib", choices=face_ref.ENCODERS,
              source=README + "; methods.md; tiny: the offline MTCNN + dlib encoder (128-d)"),
        Param("face_weights_dir", str, "", source="metrics/face_backends.py: insightface packs are read from disk, never downloaded",
              help="folder holding insightface packs (default ~/.insightface/models)"),
    ]
    needs = Needs(weights=("SD 1.5 base", "h94/IP-Adapter-FaceID ip-adapter-faceid_sd15.bin (non-commercial)",
                           "insightface buffalo_l pack"))

    def personalize(self, images, base, recipe, ctx, out_dir):
        meta = face_ref.encode_reference(images, self.p.face_encoder, self.p.face_weights_dir, self.name, out_dir, "unit-mean")
        ctx.notes["attack"] = {"face_encoder": meta["encoder"], "faces_detected": sum(meta["detected"]),
                               "reference_images": meta["images"], "reference": meta["reference"]}

    # ----------------------------------------------------------- generation
    def base_ref(self, base, ctx):
        return resolve({"id": self.p.base_model}, ctx.zoo_root) if self.p.base_model else base

    def load_pipeline(self, base, sampler: str, ctx):
        """SD pipeline of the base model with the FaceID checkpoint loaded by diffusers."""
        model = self.base_ref(base, ctx)
        pipe = sd.pipeline(load_sd(model, ctx.device, sd.inference_dtype(self.p.dtype, ctx.device)), sampler)
        folder = face_ref.weights_folder(self.p.adapter, ctx.zoo_root, self.name, "IP-Adapter FaceID checkpoint",
                                         [self.p.weight_name])
        face_ref.check_file(folder, self.p.weight_name, self.name, "adapter")
        try:
            pipe.load_ip_adapter(str(folder), subfolder="", weight_name=self.p.weight_name, image_encoder_folder=None)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise BenchError(f"{self.name}: {self.p.weight_name} does not fit the base model {model.source} "
                             f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})") from None
        pipe.set_ip_adapter_scale(self.p.scale)
        return pipe, model

    def generate(self, personalized, base, gen, recipe, ctx):
        import torch

        emb, meta = face_ref.load_reference(personalized, self.name)
        pipe, model = self.load_pipeline(base, gen.sampler, ctx)
        want = pipe.unet.encoder_hid_proj.image_projection_layers[0].ff.net[0].proj.in_features
        if want != emb.shape[0]:
            raise BenchError(f"{self.name}: the adapter expects {want}-d face embeddings, face_encoder "
                             f"{meta['encoder']!r} gave {emb.shape[0]}-d; pair the encoder with its adapter")
        face = torch.from_numpy(emb).to(ctx.device, pipe.unet.dtype)[None, None]  # (batch 1, 1 image, d)
        cfg = gen.guidance_scale > 1  # diffusers applies CFG only above 1; the negative half is the zero embedding
        embeds = torch.cat([torch.zeros_like(face), face]) if cfg else face
        negative = ", ".join(x for x in (gen.negative_prompt, recipe.negative_prompt) if x)
        ctx.notes["attack"] = {
            "negative_prompt": negative, "sampler": gen.sampler, "steps": gen.steps, "guidance_scale": gen.guidance_scale,
            "base_model": model.source, "base_revision": model.revision, "cell_base_model": base.source,
            "adapter": f"{self.p.adapter}/{self.p.weight_name}", "adapter_revision": face_ref.revision(self.p.adapter),
            "ip_adapter_scale": self.p.scale, "dtype": str(pipe.unet.dtype).replace("torch.", ""),
            "face_encoder": meta["encoder"], "reference": meta["reference"], "faces_detected": sum(meta["detected"]),
        }
        return gen.run(ctx, lambda prompt, seed: sd.generate(pipe, [prompt], [seed], gen.steps, gen.guidance_scale, negative,
                                                             gen.resolution, ip_adapter_image_embeds=[embeds])[0],
                       recipe.sample_suffix)

