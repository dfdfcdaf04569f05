"""Just enough of the ELF object format to check compiled firmware: sections and symbols.

Reads 32- and 64-bit little-endian relocatable objects (what ``g++ -c`` and
``arm-none-eabi-g++ -c`` write), from the format's own headers rather than
from a tool's printed text.
"""

import struct
from dataclasses import dataclass

SHF_ALLOC = 0x2
SHT_SYMTAB = 2
SHT_NOBITS = 8


@dataclass(frozen=True)
class Section:
    name: str
    type: int
    flags: int
    offset: int
    size: int
    alignment: int


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    section: int


class ElfObject:
    def __init__(self, content):
        if content[:4] != b"\x7fELF" or content[5] != 1:
            raise ValueError("not a little-endian ELF file")
        self.content = content
        self.bits = 64 if content[4] == 2 else 32
        # e_shoff, then e_shentsize, e_shnum and e_shstrndx, at their offsets for each class.
        if self.bits == 64:
            (offset,) = struct.unpack_from("<Q", content, 0x28)
            entry_size, count, names = struct.unpack_from("<HHH", content, 0x3A)
        else:
            (offset,) = struct.unpack_from("<I", content, 0x20)
            entry_size, count, names = struct.unpack_from("<HHH", content, 0x2E)
        raw = [self._section_header(offset + index * entry_size) for index in range(count)]
        string_table = raw[names]
        self.sections = [
            Section(self._string(string_table[3], name), kind, flags, start, size, align)
            for name, kind, flags, start, size, align, _, _ in raw
        ]
        self._raw = raw

    def _section_header(self, at):
        if self.bits == 64:
            name, kind, flags, _, offset, size, link, _, align, entsize = struct.unpack_from(
                "<IIQQQQIIQQ", self.content, at
            )
        else:
            name, kind, flags, _, offset, size, link, _, align, entsize = struct.unpack_from(
                "<IIIIIIIIII", self.content, at
            )
        return name, kind, flags, offset, size, align, link, entsize

    def _string(self, table_offset, index):
        end = self.content.index(b"\0", table_offset + index)
        return self.content[table_offset + index : end].decode()

    def symbols(self):
        found = []
        for _, kind, _, offset, size, _, link, entsize in self._raw:
            if kind != SHT_SYMTAB:
                continue
            strings = self._raw[link][3]
            for at in range(offset, offset + size, entsize):
                if self.bits == 64:
                    symbol_name, _, _, section, value, symbol_size = struct.unpack_from("<IBBHQQ", self.content, at)
                else:
                    symbol_name, value, symbol_size, _, _, section = struct.unpack_from("<IIIBBH", self.content, at)
                found.append(Symbol(self._string(strings, symbol_name), value, symbol_size, section))
        return found

    def symbol(self, name):
        return next(symbol for symbol in self.symbols() if symbol.name == name)

    def bytes_of(self, symbol):
        section = self.sections[symbol.section]
        start = section.offset + symbol.value
        return self.content[start : start + symbol.size]

    def allocated_bytes(self):
        """What the object puts in the image: the size of every section loaded to memory."""
        return sum(section.size for section in self.sections if section.flags & SHF_ALLOC)
