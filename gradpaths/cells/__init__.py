"""Recurrent cells: the public protocol, a registry, and one module per family.

A cell is any object with ``edges``, ``hop_edges``, ``init``, ``zero_state``, ``read``,
``step`` and ``output`` (see ``protocol.CellProtocol``); no base class is needed. The
library's own cells register their constructor once with ``@register(name)``; the
training harness, interop and the test tables read ``REGISTRY``.
"""

from gradpaths.cells.registry import REGISTRY, register  # noqa: I001  (registry first: families import it)
from gradpaths.cells.classic import GRU, LSTM, MGU, RNN, Cell, HState, LSTMState, check_params
from gradpaths.cells.classic import gru, irnn, lstm, mgu, rnn
from gradpaths.cells.protocol import CellProtocol
from gradpaths.cells.stack import Stack, stack
from gradpaths.cells.gated_linear import LRU, LinearRecurrence, MinGRU, MinLSTM, lru, mingru, minlstm
from gradpaths.cells.ssm import RGLRU, S6, MambaBlock, MambaState, S6State, mamba, rglru, s6
from gradpaths.cells.xlstm import MLSTM, SLSTM, MLSTMState, SLSTMState, mlstm, slstm
from gradpaths.cells.lstm_variants import LayerNormLSTM, PeepholeLSTM, layer_norm_lstm, peephole_lstm

__all__ = [
    "REGISTRY", "register", "CellProtocol", "Cell", "check_params",
    "RNN", "LSTM", "GRU", "MGU", "LSTMState", "HState", "rnn", "irnn", "lstm", "gru", "mgu",
    "Stack", "stack",
    "MinGRU", "MinLSTM", "LRU", "LinearRecurrence", "mingru", "minlstm", "lru",
    "RGLRU", "S6", "MambaBlock", "MambaState", "S6State", "rglru", "s6", "mamba",
    "SLSTM", "MLSTM", "SLSTMState", "MLSTMState", "slstm", "mlstm",
    "PeepholeLSTM", "LayerNormLSTM", "peephole_lstm", "layer_norm_lstm",
]  # fmt: skip
