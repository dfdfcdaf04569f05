import pytest

from tinyml_quant.architectures import build_model

SMALL_KNOBS = {
    "resnet_v1": {"depth": 8, "base_filters": 4},
    "resnet_v2": {"depth": 11, "base_filters": 4},
    "mobilenet_v1": {"alpha": 0.25},
    "mobilenet_v2": {"alpha": 0.35},
    "custom": {"base_filters": 4},
    "resnet8": {},
}


@pytest.mark.parametrize("name", sorted(SMALL_KNOBS))
@pytest.mark.parametrize("input_shape", [(28, 28, 1), (32, 32, 3)])
def test_every_architecture_maps_images_to_class_probabilities(name, input_shape):
    model = build_model(name, input_shape, 10, **SMALL_KNOBS[name])
    assert model.input_shape == (None, *input_shape)
    assert model.output_shape == (None, 10)


def test_resnet_depths_follow_the_papers():
    # 6n+2 basic blocks: 3 stages x n blocks x 2 convolutions + stem + dense = depth weighted layers.
    model = build_model("resnet_v1", (32, 32, 3), 10, depth=20, base_filters=16)
    convolutions = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    shortcuts = [layer for layer in convolutions if "shortcut" in layer.name]
    assert len(convolutions) - len(shortcuts) + 1 == 20
    # The CIFAR ResNet-20 of He et al. has about 0.27 M parameters.
    assert 260_000 < model.count_params() < 280_000


@pytest.mark.parametrize("name, knobs", [("resnet_v1", {"depth": 21}), ("resnet_v2", {"depth": 21})])
def test_invalid_depth_is_a_value_error(name, knobs):
    with pytest.raises(ValueError, match="depth must be"):
        build_model(name, (32, 32, 3), 10, **knobs)


def test_unknown_model_is_a_value_error():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", (32, 32, 3), 10)


def test_custom_model_is_microcontroller_sized():
    model = build_model("custom", (32, 32, 3), 10, base_filters=16)
    assert model.count_params() < 15_000


def test_mobilenets_pad_mnist_to_32_pixels():
    model = build_model("mobilenet_v1", (28, 28, 1), 10, alpha=0.25)
    assert model.get_layer("pad_to_minimum_size").output.shape[1:3] == (32, 32)


def test_resnet8_is_mlperf_tinys_reference_model():
    """The counts of MLPerf Tiny's own pretrainedResnet_quant.tflite: 77,706 weights and biases, 12,501,632 MACs."""
    import numpy as np

    from tinyml_quant.conversion import convert
    from tinyml_quant.graph import analyze_graph

    model = build_model("resnet8", (32, 32, 3), 10)
    dense = model.get_layer("predictions")
    dense.bias.assign(np.full(10, 0.1, np.float32))  # an untrained zero bias would be dropped by the converter
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    analysis = analyze_graph(convert(model, "int8", images))
    assert analysis["macs"] == 12_501_632 and analysis["parameters"] == 77_706
    assert analysis["operators"] == {"ADD": 3, "CONV_2D": 9, "FULLY_CONNECTED": 1, "MEAN": 1, "SOFTMAX": 1}
