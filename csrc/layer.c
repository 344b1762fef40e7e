/* The table of layer kinds: the one place that knows them all. */
#include "layer.h"

static const mc_layer_ops *const kinds[MC_LAYER_COUNT] = {
    [MC_LAYER_DENSE] = &mc_dense_ops,
    [MC_LAYER_ACTIVATION] = &mc_activation_ops,
    [MC_LAYER_DROPOUT] = &mc_dropout_ops,
    [MC_LAYER_RESCALING] = &mc_rescaling_ops,
    [MC_LAYER_CONV2D] = &mc_conv2d_ops,
    [MC_LAYER_MAXPOOL2D] = &mc_maxpool2d_ops,
    [MC_LAYER_AVGPOOL2D] = &mc_avgpool2d_ops,
    [MC_LAYER_GLOBALAVGPOOL2D] = &mc_globalavgpool2d_ops,
    [MC_LAYER_BATCHNORM] = &mc_batchnorm_ops,
    [MC_LAYER_RELU] = &mc_relu_ops,
    [MC_LAYER_NORMALIZATION] = &mc_normalization_ops,
};

const mc_layer_ops *mc_layer_ops_of(int kind) {
    return kind >= 0 && kind < MC_LAYER_COUNT ? kinds[kind] : NULL;
}
