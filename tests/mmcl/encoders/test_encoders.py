import torch

from mmcl.data.flickr import load_image
from mmcl.encoders.audio import AudioConvEncoder, mel_filterbank
from mmcl.encoders.efficientnet import EfficientNetLite0Encoder
from mmcl.encoders.hub import resolve_text_model
from mmcl.encoders.open_clip_towers import OpenClipImageEncoder, OpenClipTextEncoder
from mmcl.encoders.text import TextEncoder

IMAGENET_DOGS = range(151, 269)  # ImageNet-1k classes 151..268 are dog breeds


def test_packaged_efficientnet_recognises_dogs(flickr_records):
    """The shipped ImageNet weights load into our module and classify real Flickr dog photos."""
    enc = EfficientNetLite0Encoder(weights="packaged", image_size=224).eval()
    dogs = [r for r in flickr_records if " dog " in f" {r.captions[0].lower()} "][:24]
    tf = enc.transform()
    x = torch.stack([tf(load_image(r.image_path)) for r in dogs])
    with torch.no_grad():
        pred = enc.net(x).argmax(1)
        feats = enc(x)
    assert feats.shape == (len(dogs), 1280)
    dog_rate = sum(int(p) in IMAGENET_DOGS for p in pred) / len(dogs)
    assert dog_rate > 0.5, dog_rate  # random weights give ~118/1000
    random_enc = EfficientNetLite0Encoder(weights=None).eval()
    with torch.no_grad():
        assert not torch.allclose(random_enc(x[:2]), feats[:2])


def test_text_encoder_poolings_and_packaged_weights():
    path = resolve_text_model("all-minilm-l6-v2")
    assert (path / "model.safetensors").is_file()
    sents = ["A dog runs on the grass .", "A man rides a bike down the street ."]
    outs = {}
    for pooling in ("cls", "mean", "first_last_avg"):
        enc = TextEncoder("all-minilm-l6-v2", pooling=pooling).eval()
        outs[pooling] = enc.embed_texts(sents)
        assert outs[pooling].shape == (2, 384)
    assert not torch.allclose(outs["cls"], outs["mean"])
    # mean pooling of the packaged model equals sentence-transformers' own embedding
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(path), device="cpu").encode(sents, convert_to_tensor=True, normalize_embeddings=True)
    ours = torch.nn.functional.normalize(outs["mean"], dim=-1)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_reinit_keeps_embeddings_and_resets_layers():
    base = TextEncoder("all-minilm-l6-v2")
    fresh = TextEncoder("all-minilm-l6-v2", reinit_layers=True)
    emb = "embeddings.word_embeddings.weight"
    sd_base, sd_fresh = base.backbone.state_dict(), fresh.backbone.state_dict()
    assert torch.equal(sd_base[emb], sd_fresh[emb])
    layer = "encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(sd_base[layer], sd_fresh[layer])
    assert abs(float(sd_fresh[layer].std()) - 0.02) < 0.005  # BERT init


def test_open_clip_towers_build_offline():
    img = OpenClipImageEncoder("RN50", pretrained=None)
    txt = OpenClipTextEncoder("RN50", pretrained=None)
    with torch.no_grad():
        zi = img(torch.randn(2, 3, img.image_size, img.image_size))
        zt = txt(txt.tokenize(["a photo of a dog", "a cat"]))
    assert zi.shape == (2, img.output_dim) and zt.shape == (2, txt.output_dim) and img.output_dim == txt.output_dim


def test_audio_encoder_and_mel_bank():
    fb = mel_filterbank(400, 64, 16000)
    assert fb.shape == (64, 201) and torch.all(fb >= 0) and torch.all(fb.sum(1) > 0)
    enc = AudioConvEncoder(n_mels=32, width=48, layers=3, transformer_layers=1)
    out = enc(torch.randn(3, 16000))
    assert out.shape == (3, 48)
    out.sum().backward()
    assert enc.convs[0].weight.grad is not None
