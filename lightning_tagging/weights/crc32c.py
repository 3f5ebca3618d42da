"""CRC-32C (Castagnoli), the checksum of TensorFlow checkpoint bundles, in numpy.

TensorFlow stores a CRC-32C of every table block of a bundle's ``.index`` file and of every
tensor's bytes in the ``.data`` shard. Python's standard library only has CRC-32 (another
polynomial), and a byte-at-a-time Python loop takes seconds per megabyte, so long inputs are
cut into equal lanes whose CRCs are computed side by side with numpy, then chained.

Chaining works because one step of the CRC register, ``r' = T[(r ^ byte) & 0xFF] ^ (r >> 8)``,
is linear over GF(2) in the pair (register, byte): the register after a lane equals
(the starting register pushed through ``L`` zero bytes) XOR (the lane's CRC from a zero register).
"""

from __future__ import annotations

import numpy as np

POLYNOMIAL = 0x82F63B78  # Castagnoli, bit-reversed
_LANES = 1024  # lanes processed side by side for long inputs
_SHORT = 1 << 14  # below this many bytes the plain loop is fast enough


def _make_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(POLYNOMIAL), table >> 1).astype(np.uint32)
    return table


_TABLE = _make_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def _register_after(register: int, data: bytes | memoryview) -> int:
    """Raw register (no initial or final inversion) after feeding ``data`` byte by byte."""
    table = _TABLE_LIST
    for byte in bytes(data):
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def _lane_registers(lanes: np.ndarray) -> np.ndarray:
    """Raw registers ``[K]`` of ``K`` lanes, from a zero register; ``lanes`` is ``[L, K]`` uint8."""
    registers = np.zeros(lanes.shape[1], dtype=np.uint32)
    for row in lanes:
        registers = _TABLE[(registers ^ row) & 0xFF] ^ (registers >> 8)
    return registers


def _zero_shift_tables(n_zero_bytes: int) -> list[list[int]]:
    """Four 256-entry tables ``Z`` with ``register after n zero bytes = XOR_k Z[k][byte k of register]``."""
    basis = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
    images = _lane_registers_from(basis, n_zero_bytes)  # [32]: where each register bit ends up
    tables = []
    for k in range(4):
        table = np.zeros(256, dtype=np.uint32)
        for bit in range(8):
            has_bit = (np.arange(256) >> bit) & 1 == 1
            table[has_bit] ^= images[8 * k + bit]
        tables.append([int(v) for v in table])
    return tables


def _lane_registers_from(registers: np.ndarray, n_zero_bytes: int) -> np.ndarray:
    """Push each register of ``registers`` through ``n_zero_bytes`` zero bytes."""
    for _ in range(n_zero_bytes):
        registers = _TABLE[registers & 0xFF] ^ (registers >> 8)
    return registers


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """CRC-32C of ``data`` (e.g. ``crc32c(b"123456789") == 0xE3069283``)."""
    buffer = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    register = 0xFFFFFFFF
    if buffer.size < _SHORT:
        return _register_after(register, buffer.tobytes()) ^ 0xFFFFFFFF
    lane_length = buffer.size // _LANES
    body = buffer[: lane_length * _LANES].reshape(_LANES, lane_length)
    lane_registers = _lane_registers(np.ascontiguousarray(body.T))
    shift = _zero_shift_tables(lane_length)
    for lane_register in lane_registers.tolist():
        register = (
            shift[0][register & 0xFF]
            ^ shift[1][(register >> 8) & 0xFF]
            ^ shift[2][(register >> 16) & 0xFF]
            ^ shift[3][register >> 24]
            ^ lane_register
        )
    register = _register_after(register, buffer[lane_length * _LANES :].tobytes())
    return register ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """LevelDB's masked CRC-32C (what table block trailers and TF bundle entries store)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
