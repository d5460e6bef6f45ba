// tapeout/tapeout.h -- the whole kernel library in one include (stream.h stays opt-in because
// it pulls in <hls_stream.h> under synthesis).
#ifndef TAPEOUT_TAPEOUT_H
#define TAPEOUT_TAPEOUT_H

#include "tapeout/act.h"
#include "tapeout/add.h"
#include "tapeout/argmax.h"
#include "tapeout/common.h"
#include "tapeout/concat.h"
#include "tapeout/conv2d.h"
#include "tapeout/dense.h"
#include "tapeout/depthwise.h"
#include "tapeout/layer.h"
#include "tapeout/pool.h"
#include "tapeout/requant.h"
#include "tapeout/reshape.h"
#include "tapeout/softmax_lut.h"

#endif  // TAPEOUT_TAPEOUT_H
