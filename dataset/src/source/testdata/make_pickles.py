"""Writes the golden CIFAR-10 python batches used by the source reader tests.

Each file is a dict laid out like an official CIFAR-10 python batch, with two images
(records 4 and 9 of the test pixel pattern) and labels [3, 7]. Run it once with each
interpreter, from this folder:

    python2 make_pickles.py   # Python 2.7.18, numpy 1.16.6: cifar10_py2_protocol2.pkl
    python3 make_pickles.py   # Python 3.11.7, numpy 2.4.6: cifar10_py3_protocol{2,4}.pkl
"""
import sys

import numpy as np

try:
    import cPickle as pickle
except ImportError:
    import pickle


def planar(record):
    """Return image `record`, planar: (channel*97 + row*31 + column*7 + record*13) % 256."""
    channel = np.arange(3).reshape(3, 1, 1)
    row = np.arange(32).reshape(1, 32, 1)
    column = np.arange(32).reshape(1, 1, 32)
    values = (channel * 97 + row * 31 + column * 7 + record * 13) % 256
    return values.astype(np.uint8).reshape(3072)


batch = {
    'data': np.stack([planar(4), planar(9)]),
    'labels': [3, 7],
    'batch_label': 'training batch 1 of 5',
    'filenames': ['leptodactylus_pentadactylus_s_000004.png', 'camion_s_000148.png'],
}
protocols = [2] if sys.version_info[0] == 2 else [2, 4]
for protocol in protocols:
    name = 'cifar10_py%d_protocol%d.pkl' % (sys.version_info[0], protocol)
    with open(name, 'wb') as f:
        pickle.dump(batch, f, protocol)
