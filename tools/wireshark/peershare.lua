-- PeerShare dissector for Wireshark and tshark: the DHT (binary UDP datagrams) and the wire
-- protocol (length-prefixed frames over TCP), both on the node's port (8001 by default).
--
-- Spec: protocol-spec/overview.md (addresses, strictness, decode errors), protocol-spec/dht.md
-- (the DHT datagrams), protocol-spec/wire.md (the wire frames), protocol-spec/content.md (the
-- manifest or a folder's tree manifest carried in MANIFEST_DATA). The reference codec is src/proto/ in the repository.
--
-- Install: copy this file into Wireshark's personal Lua plugins folder (Help > About >
-- Folders, "Personal Lua Plugins"), or run `tshark -X lua_script:peershare.lua ...`.
-- tools/wireshark/README.md has the details and an example.
--
-- How it decodes:
--   * UDP datagrams on the DHT port (a preference, default 8001) and, on any other port,
--     datagrams that start with the magic "PS" and version 1 (a heuristic).
--   * TCP streams on the wire port (a preference, default 8001) and, on any other port, streams
--     whose first frame is a HANDSHAKE ("PSWP"), or (a preference, on by default) whose
--     segment starts with plausible frame headers, for captures started mid-connection.
--     Frames are reassembled across TCP segments, several frames per segment are shown.
--   * Every check of the reference decoder is made, in the same order, so a malformed
--     message is reported with the decode error the spec names (UnexpectedEnd, BadMagic,
--     UnsupportedVersion, UnknownMessageType, LengthTooLarge, BadAddressFamily, InvalidValue,
--     TrailingBytes, TooLarge) as an expert info of severity "error" and in the field
--     peershare.dht.error / peershare.wire.error, never as a Lua error.
--
-- Works with the Lua of Wireshark 3.x (5.2) and 4.x (5.2 to 5.4): no bit operators, no
-- integer division, no goto.

set_plugin_info({
    version = "1.0.0",
    description = "PeerShare DHT (UDP) and wire protocol (TCP)",
    repository = "tools/wireshark/peershare.lua in the PeerShare repository",
})

local DEFAULT_PORT = 8001

-- Limits (overview.md section 8, wire.md section 12).
local DHT_MAX_DATAGRAM = 1232
local DHT_HEADER_LEN = 45
local TOKEN_LEN = 16
local MAX_CONTACTS = 20
local MAX_PROVIDERS = 50
local MAX_ERROR_TEXT = 200
local MAX_FRAME_LEN = 1048592
local MAX_CHUNKS = 1048576
local MAX_MANIFEST_LEN = 33554496
local MAX_MANIFEST_PIECE = 262144
local MAX_PEERS = 50
local HANDSHAKE_BODY_LEN = 72

-- The decode error kinds (overview.md section 9), in the order the spec lists them.
local ERROR_KINDS = {
    "UnexpectedEnd", "BadMagic", "UnsupportedVersion", "UnknownMessageType", "LengthTooLarge",
    "BadAddressFamily", "InvalidValue", "TrailingBytes", "TooLarge",
}
local ERROR_BLURB = {
    UnexpectedEnd = "the input ends inside a field",
    BadMagic = "not a PeerShare datagram (magic is not \"PS\")",
    UnsupportedVersion = "protocol version is not 1",
    UnknownMessageType = "undefined message type",
    LengthTooLarge = "a count or length is above its maximum",
    BadAddressFamily = "address family is neither 4 nor 6",
    InvalidValue = "a field holds a value that is not allowed",
    TrailingBytes = "bytes after the end of the message",
    TooLarge = "the message is longer than allowed",
}

---------------------------------------------------------------------------------------------
-- Small helpers
---------------------------------------------------------------------------------------------

local function hex_of(s)
    return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

-- "1a2b3c4d…": the first 4 bytes of an ID, for the Info column.
local function short_id(tvb, off)
    return hex_of(tvb:raw(off, 4)) .. "\226\128\166"
end

-- Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
local function valid_utf8(s)
    local i, n = 1, #s
    while i <= n do
        local c = s:byte(i)
        local need, lo, hi = 0, 0x80, 0xbf
        if c < 0x80 then
            need = 0
        elseif c >= 0xc2 and c <= 0xdf then
            need = 1
        elseif c == 0xe0 then
            need, lo = 2, 0xa0
        elseif (c >= 0xe1 and c <= 0xec) or c == 0xee or c == 0xef then
            need = 2
        elseif c == 0xed then
            need, hi = 2, 0x9f
        elseif c == 0xf0 then
            need, lo = 3, 0x90
        elseif c >= 0xf1 and c <= 0xf3 then
            need = 3
        elseif c == 0xf4 then
            need, hi = 3, 0x8f
        else
            return false
        end
        for k = 1, need do
            local b = s:byte(i + k)
            if b == nil then return false end
            if k == 1 then
                if b < lo or b > hi then return false end
            elseif b < 0x80 or b > 0xbf then
                return false
            end
        end
        i = i + need + 1
    end
    return true
end

-- Text for the Info column: quoted, control characters escaped, cut to 40 bytes.
local function quote(s)
    if #s > 40 then s = s:sub(1, 40) .. "..." end
    return '"' .. s:gsub("[%c\"\\]", function(ch) return string.format("\\x%02x", ch:byte()) end) .. '"'
end

-- Whether bit `i` (0 = most significant) of byte value `b` is set.
local function bit_set(b, i)
    return math.floor(b / 2 ^ (7 - i)) % 2 == 1
end

-- "0-2, 9" from a sorted list of chunk indices, at most `limit` characters.
local function ranges_text(list, limit)
    local parts, i = {}, 1
    while i <= #list do
        local j = i
        while j < #list and list[j + 1] == list[j] + 1 do j = j + 1 end
        parts[#parts + 1] = (i == j) and tostring(list[i]) or (list[i] .. "-" .. list[j])
        i = j + 1
    end
    local s = table.concat(parts, ", ")
    if #s > limit then s = s:sub(1, limit) .. "..." end
    return s
end

---------------------------------------------------------------------------------------------
-- Protocols, fields, expert infos
---------------------------------------------------------------------------------------------

local dht = Proto("peershare.dht", "PeerShare DHT")
local wire = Proto("peershare.wire", "PeerShare Wire Protocol")

local DHT_TYPES = {
    [0x01] = "PING", [0x02] = "PONG", [0x03] = "FIND_NODE", [0x04] = "NODES",
    [0x05] = "GET_PROVIDERS", [0x06] = "PROVIDERS", [0x07] = "ANNOUNCE", [0x08] = "ACK",
    -- NAT traversal (nat.md)
    [0x09] = "DIALBACK", [0x0a] = "DIALBACK_ACK", [0x0b] = "REGISTER", [0x0c] = "REGISTERED",
    [0x0d] = "INTRODUCE", [0x0e] = "INTRODUCED", [0x0f] = "CALL", [0x10] = "CALL_ACK",
    -- reprovide sweep batches (dht.md 4.9a, 4.9b)
    [0x11] = "ANNOUNCE_MANY", [0x12] = "STORED",
    -- proof of identity (dht.md 4.10, 4.11)
    [0x13] = "PROVE", [0x14] = "PROOF",
    [0x7f] = "ERROR",
}
local DHT_RESPONSE = { [0x02] = true, [0x04] = true, [0x06] = true, [0x08] = true, [0x0a] = true,
    [0x0c] = true, [0x0e] = true, [0x10] = true, [0x12] = true, [0x14] = true, [0x7f] = true }
local DHT_ERROR_CODES = {
    [1] = "BAD_REQUEST", [2] = "BAD_TOKEN", [3] = "STORE_FULL", [4] = "RATE_LIMITED",
    [5] = "UNKNOWN_PEER", [6] = "RETRY_LATER",
}
local CALL_MODES = { [1] = "PUNCH", [2] = "RELAY" }
local MAX_RENDEZVOUS = 20
-- dht.md 4.9a: one key less fits in an ANNOUNCE_MANY with a rendezvous.
local MAX_ANNOUNCE_KEYS_RENDEZVOUS = 35
local MAX_ANNOUNCE_KEYS = 36

-- Wire types with their body layout: exact = fixed size, max = largest body (wire.md 1, 2).
local WIRE_TYPES = {
    [0x00] = { name = "KEEPALIVE", exact = 0 },
    [0x01] = { name = "HANDSHAKE", max = 1024 },
    [0x02] = { name = "METADATA", max = 1 + 255 },
    [0x03] = { name = "MANIFEST_REQUEST", exact = 8 },
    [0x04] = { name = "MANIFEST_DATA", max = 8 + MAX_MANIFEST_PIECE },
    [0x05] = { name = "BITFIELD", max = 4 + MAX_CHUNKS / 8 },
    [0x06] = { name = "HAVE", exact = 4 },
    [0x07] = { name = "REQUEST", exact = 4 },
    [0x08] = { name = "PIECE", max = 4 + 1048576 },
    [0x09] = { name = "CANCEL", exact = 4 },
    [0x0a] = { name = "REJECT", exact = 5 },
    [0x0b] = { name = "CHOKE", exact = 0 },
    [0x0c] = { name = "UNCHOKE", exact = 0 },
    [0x0d] = { name = "INTERESTED", exact = 0 },
    [0x0e] = { name = "NOT_INTERESTED", exact = 0 },
    [0x0f] = { name = "PEERS", max = 1 + MAX_PEERS * (19 + 32) },
    [0x10] = { name = "ERROR", max = 2 + 1 + MAX_ERROR_TEXT },
    [0x11] = { name = "PROBE", exact = 8 },
    [0x12] = { name = "RELAY", exact = 32 + 8 },
    [0x13] = { name = "RELAY_OK", exact = 0 },
}
local WIRE_TYPE_NAMES = {}
for t, d in pairs(WIRE_TYPES) do WIRE_TYPE_NAMES[t] = d.name end
local WIRE_ERROR_CODES = {
    [1] = "UNKNOWN_CONTENT", [2] = "PROTOCOL_VIOLATION", [3] = "BANNED",
    [4] = "TOO_MANY_CONNECTIONS", [5] = "SHUTTING_DOWN", [6] = "COMPLETE",
}
local REJECT_REASONS = { [1] = "NOT_AVAILABLE", [2] = "CHOKED", [3] = "BUSY", [4] = "CONTENT_CHANGED" }
local FAMILIES = { [4] = "IPv4", [6] = "IPv6" }

-- Fields and expert infos common to both protocols: the address encoding and the errors.
local function common_fields(p, F)
    F.addr_family = ProtoField.uint8(p .. ".addr.family", "Address family", base.DEC, FAMILIES)
    F.addr_ipv4 = ProtoField.ipv4(p .. ".addr.ipv4", "IPv4 address")
    F.addr_ipv6 = ProtoField.ipv6(p .. ".addr.ipv6", "IPv6 address")
    F.addr_port = ProtoField.uint16(p .. ".addr.port", "Port", base.DEC)
    F.error = ProtoField.string(p .. ".error", "Decode error",
        "the spec's name of the decode error (overview.md, section 9)")
    F.undecoded = ProtoField.bytes(p .. ".undecoded", "Not decoded", base.NONE,
        "bytes after a decode error")
end

local function make_experts(p)
    local E = {}
    for _, kind in ipairs(ERROR_KINDS) do
        local abbr = p .. ".expert." .. kind:gsub("(%l)(%u)", "%1_%2"):lower()
        E[kind] = ProtoExpert.new(abbr, kind .. ": " .. ERROR_BLURB[kind],
            expert.group.MALFORMED, expert.severity.ERROR)
    end
    E.note = ProtoExpert.new(p .. ".expert.note", "Note", expert.group.PROTOCOL, expert.severity.NOTE)
    E.chat = ProtoExpert.new(p .. ".expert.chat", "Reserved flag bits set (ignored)",
        expert.group.PROTOCOL, expert.severity.CHAT)
    E.lua = ProtoExpert.new(p .. ".expert.internal", "Dissector bug: please report",
        expert.group.MALFORMED, expert.severity.ERROR)
    return E
end

-- DHT fields (dht.md).
local DF = {}
DF.magic = ProtoField.string("peershare.dht.magic", "Magic")
DF.version = ProtoField.uint8("peershare.dht.version", "Version", base.DEC)
DF.type = ProtoField.uint8("peershare.dht.type", "Type", base.HEX, DHT_TYPES)
DF.type_name = ProtoField.string("peershare.dht.type_name", "Type name")
DF.flags = ProtoField.uint8("peershare.dht.flags", "Flags", base.HEX)
DF.flag_not_reachable = ProtoField.bool("peershare.dht.flags.not_reachable", "NOT_REACHABLE", 8,
    { "sender cannot receive unsolicited datagrams", "reachable" }, 0x01)
DF.flag_ports_vary = ProtoField.bool("peershare.dht.flags.ports_vary", "PORTS_VARY", 8,
    { "the registered node's NAT gives each destination another port", "ports kept" }, 0x08)
DF.flag_reserved = ProtoField.uint8("peershare.dht.flags.reserved", "Reserved", base.HEX, nil, 0xfe)
DF.txid = ProtoField.uint64("peershare.dht.txid", "Transaction ID", base.HEX)
DF.sender = ProtoField.bytes("peershare.dht.sender", "Sender ID", base.NONE)
DF.observed = ProtoField.none("peershare.dht.observed", "Observed address")
DF.target = ProtoField.bytes("peershare.dht.target", "Target", base.NONE)
DF.key = ProtoField.bytes("peershare.dht.key", "Key (content ID)", base.NONE)
DF.contact_count = ProtoField.uint8("peershare.dht.contact_count", "Contact count", base.DEC)
DF.contact = ProtoField.none("peershare.dht.contact", "Contact")
DF.contact_id = ProtoField.bytes("peershare.dht.contact.id", "Node ID", base.NONE)
DF.contact_addr = ProtoField.none("peershare.dht.contact.addr", "Address")
DF.token = ProtoField.bytes("peershare.dht.token", "Token", base.NONE)
DF.provider_count = ProtoField.uint8("peershare.dht.provider_count", "Provider count", base.DEC)
DF.provider = ProtoField.none("peershare.dht.provider", "Provider")
DF.port = ProtoField.uint16("peershare.dht.port", "Port (TCP)", base.DEC)
DF.error_code = ProtoField.uint16("peershare.dht.error_code", "Error code", base.DEC, DHT_ERROR_CODES)
DF.text_len = ProtoField.uint8("peershare.dht.text_len", "Text length", base.DEC)
DF.text = ProtoField.string("peershare.dht.text", "Text")
DF.nonce = ProtoField.uint64("peershare.dht.nonce", "Nonce", base.HEX)
DF.lifetime = ProtoField.uint16("peershare.dht.lifetime", "Lifetime (s)", base.DEC)
DF.mode = ProtoField.uint8("peershare.dht.mode", "Mode", base.DEC, CALL_MODES)
DF.peer_id = ProtoField.bytes("peershare.dht.peer_id", "Peer ID", base.NONE)
DF.addr = ProtoField.none("peershare.dht.addr", "Address")
DF.rendezvous = ProtoField.none("peershare.dht.rendezvous", "Rendezvous")
DF.rendezvous_count = ProtoField.uint8("peershare.dht.rendezvous_count", "Rendezvous count", base.DEC)
DF.key_count = ProtoField.uint8("peershare.dht.key_count", "Key count", base.DEC)
DF.stored = ProtoField.uint8("peershare.dht.stored", "Keys stored", base.DEC)
DF.rv_record = ProtoField.none("peershare.dht.rendezvous_record", "Rendezvous record")
DF.node_id = ProtoField.bytes("peershare.dht.node_id", "Node ID", base.NONE)
DF.provider_id = ProtoField.bytes("peershare.dht.provider_id", "Provider node ID", base.NONE)
DF.challenge = ProtoField.bytes("peershare.dht.challenge", "Nonce (challenge)", base.NONE)
DF.public_key = ProtoField.bytes("peershare.dht.public_key", "Ed25519 public key", base.NONE)
DF.signature = ProtoField.bytes("peershare.dht.signature", "Signature", base.NONE)
DF.response_in = ProtoField.framenum("peershare.dht.response_in", "Response in", base.NONE)
DF.request_in = ProtoField.framenum("peershare.dht.request_in", "Request in", base.NONE)
DF.rtt = ProtoField.relative_time("peershare.dht.time", "Time since request")
common_fields("peershare.dht", DF)
local DE = make_experts("peershare.dht")

-- Wire fields (wire.md).
local WF = {}
WF.length = ProtoField.uint32("peershare.wire.length", "Length", base.DEC)
WF.type = ProtoField.uint8("peershare.wire.type", "Type", base.HEX, WIRE_TYPE_NAMES)
WF.type_name = ProtoField.string("peershare.wire.type_name", "Type name")
WF.hs_magic = ProtoField.string("peershare.wire.handshake.magic", "Magic")
WF.hs_version = ProtoField.uint8("peershare.wire.handshake.version", "Version", base.DEC)
WF.hs_flags = ProtoField.uint8("peershare.wire.handshake.flags", "Flags (reserved)", base.HEX)
WF.node_id = ProtoField.bytes("peershare.wire.handshake.node_id", "Node ID", base.NONE)
WF.content_id = ProtoField.bytes("peershare.wire.handshake.content_id", "Content ID", base.NONE)
WF.listen_port = ProtoField.uint16("peershare.wire.handshake.listen_port", "Listen port", base.DEC)
WF.conn_content = ProtoField.string("peershare.wire.connection_content_id",
    "Content ID of this connection", base.ASCII, "from the connection's HANDSHAKE (hex)")
WF.name_len = ProtoField.uint8("peershare.wire.metadata.name_len", "Name length", base.DEC)
WF.name = ProtoField.string("peershare.wire.metadata.name", "File name")
WF.mreq_offset = ProtoField.uint32("peershare.wire.manifest.offset", "Manifest offset", base.DEC)
WF.mreq_length = ProtoField.uint32("peershare.wire.manifest.length", "Bytes wanted", base.DEC)
WF.mdata_total = ProtoField.uint32("peershare.wire.manifest.total_len", "Manifest total length", base.DEC)
WF.mdata_data = ProtoField.bytes("peershare.wire.manifest.data", "Manifest data")
WF.mdata_len = ProtoField.uint32("peershare.wire.manifest.data_len", "Manifest data length", base.DEC)
WF.mf_magic = ProtoField.string("peershare.wire.manifest.magic", "Manifest magic")
WF.mf_version = ProtoField.uint8("peershare.wire.manifest.version", "Manifest version", base.DEC)
WF.mf_file_size = ProtoField.uint64("peershare.wire.manifest.file_size", "File size", base.DEC)
WF.mf_chunk_size = ProtoField.uint32("peershare.wire.manifest.chunk_size", "Chunk size", base.DEC)
WF.mf_chunk_count = ProtoField.uint32("peershare.wire.manifest.chunk_count", "Chunk count", base.DEC)
WF.mf_file_sha256 = ProtoField.bytes("peershare.wire.manifest.file_sha256", "File SHA-256", base.NONE)
WF.tr_entry_count = ProtoField.uint32("peershare.wire.manifest.entry_count", "Entries (files and empty folders)", base.DEC)
WF.tr_total_size = ProtoField.uint64("peershare.wire.manifest.total_size", "Total size of the files", base.DEC)
WF.tr_entries_len = ProtoField.uint32("peershare.wire.manifest.entries_len", "Entries length", base.DEC)
WF.bf_count = ProtoField.uint32("peershare.wire.bitfield.chunk_count", "Chunk count", base.DEC)
WF.bf_bits = ProtoField.bytes("peershare.wire.bitfield.bits", "Bits", base.NONE)
WF.bf_have = ProtoField.uint32("peershare.wire.bitfield.have_count", "Number of chunks present", base.DEC)
WF.bf_chunks = ProtoField.string("peershare.wire.bitfield.chunks", "Chunks present (list)")
WF.chunk = ProtoField.uint32("peershare.wire.chunk", "Chunk index", base.DEC)
WF.piece_data = ProtoField.bytes("peershare.wire.piece.data", "Chunk data")
WF.piece_len = ProtoField.uint32("peershare.wire.piece.data_len", "Chunk data length", base.DEC)
WF.reason = ProtoField.uint8("peershare.wire.reject.reason", "Reason", base.DEC, REJECT_REASONS)
WF.peer_count = ProtoField.uint8("peershare.wire.peer_count", "Peer count", base.DEC)
WF.peer = ProtoField.none("peershare.wire.peer", "Peer")
WF.peer_addr = ProtoField.none("peershare.wire.peer.address", "Address")
WF.peer_id = ProtoField.bytes("peershare.wire.peer.node_id", "Node ID (proved to the sender)", base.NONE)
WF.error_code = ProtoField.uint16("peershare.wire.error_code", "Error code", base.DEC, WIRE_ERROR_CODES)
WF.text_len = ProtoField.uint8("peershare.wire.text_len", "Text length", base.DEC)
WF.text = ProtoField.string("peershare.wire.text", "Text")
WF.nonce = ProtoField.uint64("peershare.wire.nonce", "Nonce", base.HEX)
WF.relay_node = ProtoField.bytes("peershare.wire.relay.node_id", "Node ID", base.NONE)
-- The secure session (secure.md): handshake messages and records, shown for what they are.
WF.sec_msg = ProtoField.string("peershare.wire.secure.msg", "Secure session message")
WF.sec_len = ProtoField.uint16("peershare.wire.secure.length", "Length", base.DEC)
WF.sec_ephemeral = ProtoField.bytes("peershare.wire.secure.ephemeral",
    "Ephemeral public key (X25519, the key log's session name)", base.NONE)
WF.sec_hello = ProtoField.string("peershare.wire.secure.hello", "HELLO (protocol, version)")
WF.sec_ciphertext = ProtoField.bytes("peershare.wire.secure.ciphertext",
    "Ciphertext and tag (ChaCha20-Poly1305 or AES-256-GCM, as the encrypted proofs chose)",
    base.NONE)
common_fields("peershare.wire", WF)
local WE = make_experts("peershare.wire")

local function register(p, F, E)
    local fl = {}
    for _, f in pairs(F) do fl[#fl + 1] = f end
    p.fields = fl
    local el = {}
    for _, e in pairs(E) do el[#el + 1] = e end
    p.experts = el
end
register(dht, DF, DE)
register(wire, WF, WE)

dht.prefs.udp_port = Pref.uint("UDP port", DEFAULT_PORT,
    "UDP port of the DHT (a node's --port); other ports are found by the heuristic")
wire.prefs.tcp_port = Pref.uint("TCP port", DEFAULT_PORT,
    "TCP port of the wire protocol (a node's --port); other ports are found by the heuristic")
wire.prefs.midstream = Pref.bool("Recognise connections caught mid-stream", true,
    "The TCP heuristic also accepts segments that start with plausible frame headers, not only "
    .. "a HANDSHAKE; turn off if it claims another protocol's traffic")

---------------------------------------------------------------------------------------------
-- A cursor over one message: every read checks what remains, the first error is reported
---------------------------------------------------------------------------------------------

local Cursor = {}
Cursor.__index = Cursor

-- `base` is the offset in `tvb` of the message's first byte (errors name offsets from there).
-- When the capture kept fewer bytes than the packet had (snapshot length), running out of
-- bytes is not the message's fault: it is noted, not reported as an error.
local function new_cursor(tvb, base, stop, tree, F, E)
    return setmetatable({ tvb = tvb, base = base, off = base, stop = stop, tree = tree,
        F = F, E = E, err = nil, truncated = tvb:reported_len() > tvb:len() }, Cursor)
end

function Cursor:remaining()
    return self.stop - self.off
end

-- What remains of the message as sent (more than `remaining` in a truncated capture).
function Cursor:sent_remaining()
    if self.truncated and self.stop >= self.tvb:len() then
        return self.tvb:reported_len() - self.off
    end
    return self.stop - self.off
end

-- Reports a decode error once (the first one names the message's error, as in the spec): the
-- error item spans from `at` (default: the current offset), the byte the spec's error points
-- at, to the end; the bytes not read yet are shown as not decoded.
function Cursor:fail(kind, detail, tree, at)
    if self.err then return end
    at = at or self.off
    self.err = kind
    self.detail = detail
    local t = tree or self.tree
    local msg = string.format("%s at byte %d: %s", kind, at - self.base, detail)
    local item
    if at < self.stop then
        item = t:add(self.F.error, self.tvb(at, self.stop - at), kind)
    else
        item = t:add(self.F.error, kind)
    end
    item:set_generated()
    item:append_text(" (" .. detail .. ")")
    item:add_proto_expert_info(self.E[kind], msg)
    local from = math.max(at, self.off)
    if from < self.stop then
        t:add(self.F.undecoded, self.tvb(from, self.stop - from))
    end
    self.off = self.stop
end

-- True if `n` more bytes are there; otherwise reports UnexpectedEnd for `field`.
function Cursor:need(n, field, tree)
    if self.err then return false end
    local rem = self.stop - self.off
    if rem >= n then return true end
    if self.truncated and self.stop >= self.tvb:len() then
        self.err = "cut short by the capture"
        self.detail = string.format("only %d of %d bytes captured", self.tvb:len(), self.tvb:reported_len())
        ;(tree or self.tree):add_proto_expert_info(self.E.note, string.format(
            "The capture kept only %d of this packet's %d bytes (snapshot length): %s is not there",
            self.tvb:len(), self.tvb:reported_len(), field))
        return false
    end
    self:fail("UnexpectedEnd", string.format("%s needs %d byte(s), %d remain", field, n, rem), tree)
    return false
end

-- Takes `n` bytes (caller has checked with need) and returns their TvbRange.
function Cursor:take(n)
    local r = self.tvb(self.off, n)
    self.off = self.off + n
    return r
end

-- Adds field `f` over the next `n` bytes if they are there; returns the range or nil.
function Cursor:field(tree, f, n, name)
    if not self:need(n, name, tree) then return nil end
    local r = self:take(n)
    tree:add(f, r)
    return r
end

-- TrailingBytes if the message goes on after its layout ended.
function Cursor:finish(tree)
    if self.err then return end
    local rem = self.stop - self.off
    if rem > 0 then
        self:fail("TrailingBytes", string.format("%d byte(s) after the end of the message", rem), tree)
    end
end

-- An address (overview.md section 4): family, 4 or 16 IP bytes, port. Returns its text
-- ("192.0.2.33:4001") or nil after an error. Same order of checks as the reference decoder:
-- family byte, family value, IP bytes, IPv4-mapped IPv6, port. `label` names the address in
-- error messages ("provider 2"), `display` in the tree ("Provider 2").
function Cursor:address(tree, f, label, display)
    local F = self.F
    if not self:need(1, label .. " family", tree) then return nil end
    local fam = self.tvb(self.off, 1):uint()
    local iplen = (fam == 4 and 4) or (fam == 6 and 16) or 0
    local avail = iplen == 0 and 1 or math.min(1 + iplen + 2, self:remaining())
    local sub = tree:add(f, self.tvb(self.off, avail))
    sub:set_text(display)
    sub:add(F.addr_family, self:take(1))
    if iplen == 0 then
        self:fail("BadAddressFamily", string.format("%s family %d is neither 4 nor 6", label, fam), sub,
            self.off - 1)
        return nil
    end
    if not self:need(iplen, label .. " IP", sub) then return nil end
    local ipr = self:take(iplen)
    local ip
    if fam == 4 then
        sub:add(F.addr_ipv4, ipr)
        ip = tostring(ipr:ipv4())
    else
        sub:add(F.addr_ipv6, ipr)
        local raw = ipr:raw()
        if raw:sub(1, 10) == string.rep("\0", 10) and raw:sub(11, 12) == "\255\255" then
            self:fail("InvalidValue", label .. " is IPv4-mapped IPv6: IPv4 must be sent as family 4",
                sub, self.off - iplen - 1)
            return nil
        end
        ip = "[" .. tostring(ipr:ipv6()) .. "]"
    end
    if not self:need(2, label .. " port", sub) then return nil end
    local pr = self:take(2)
    sub:add(F.addr_port, pr)
    local text = ip .. ":" .. pr:uint()
    sub:set_text(display .. ": " .. text)
    return text, sub
end

-- A u8-counted list's count: LengthTooLarge above `max`, UnexpectedEnd when `n` items of at
-- least `min_each` bytes cannot fit. Returns the count or nil.
function Cursor:count(tree, f, name, max, min_each)
    if not self:need(1, name, tree) then return nil end
    local at = self.off
    local r = self:take(1)
    tree:add(f, r)
    local n = r:uint()
    if n > max then
        self:fail("LengthTooLarge", string.format("%s %d > maximum %d", name, n, max), tree, at)
        return nil
    end
    if n * min_each > self:sent_remaining() then
        self:fail("UnexpectedEnd", string.format("%s %d: %d item(s) of at least %d bytes cannot fit in %d byte(s)",
            name, n, n, min_each, self:sent_remaining()), tree, at)
        return nil
    end
    return n
end

-- u8 length + UTF-8 text (overview.md section 4). Returns the text or nil.
function Cursor:text(tree, f_len, f_text, len_name, name, max)
    if not self:need(1, len_name, tree) then return nil end
    local at = self.off
    local lr = self:take(1)
    tree:add(f_len, lr)
    local n = lr:uint()
    if n > max then
        self:fail("LengthTooLarge", string.format("%s %d > maximum %d", len_name, n, max), tree, at)
        return nil
    end
    if not self:need(n, name, tree) then return nil end
    local tat = self.off
    local tr = n > 0 and self:take(n) or nil
    local s = tr and tr:raw() or ""
    if not valid_utf8(s) then
        local item = tree:add(self.F.undecoded, tr)
        item:append_text(" (" .. name .. ", not UTF-8)")
        self:fail("InvalidValue", name .. " is not valid UTF-8", tree, tat)
        return nil
    end
    if tr then tree:add(f_text, tr, s) else tree:add(f_text, s) end
    return s
end

-- Runs `fn` and turns a Lua error (a bug here) into an expert info instead of a crash.
local function guarded(tree, E, fn)
    local ok, msg = pcall(fn)
    if not ok then
        tree:add_proto_expert_info(E.lua, "Dissector bug, please report: " .. tostring(msg))
    end
end

---------------------------------------------------------------------------------------------
-- DHT (dht.md): one datagram = one message
---------------------------------------------------------------------------------------------

-- Request/response matching by txid and address pair (dht.md section 3).
local dht_tx = {}

local function dht_contact(c, tree, i)
    if not c:need(1, "contact " .. i, tree) then return nil end
    local start = c.off
    local len = math.min(c:remaining(), 32 + 19)
    local sub = tree:add(DF.contact, c.tvb(start, len))
    sub:append_text(" " .. i)
    if not c:need(32, "contact " .. i .. " node ID", sub) then return nil end
    local idr = c:take(32)
    sub:add(DF.contact_id, idr)
    local a = c:address(sub, DF.contact_addr, "contact " .. i .. " address", "Address")
    if not a then return nil end
    sub:set_len(c.off - start)
    sub:append_text(": " .. hex_of(idr:raw(0, 4)) .. "\226\128\166 at " .. a)
    return true
end

local function dht_contacts(c, tree)
    local n = c:count(tree, DF.contact_count, "contact_count", MAX_CONTACTS, 32 + 7)
    if not n then return nil end
    for i = 1, n do
        if not dht_contact(c, tree, i) then return nil end
    end
    return n
end

-- The rendezvous address that flag bit 1 appends to an ANNOUNCE or ANNOUNCE_MANY (nat.md 5):
-- its summary text ("" without the flag), nil if it is malformed.
local function rendezvous_part(c, t, display)
    if not c.rendezvous then return "" end
    local ra = c:address(t, DF.rendezvous, "rendezvous", display)
    return ra and (" rendezvous=" .. ra)
end

local DHT_BODY = {
    [0x01] = function() return "" end,
    [0x08] = function() return "" end,
    [0x02] = function(c, t)
        local a = c:address(t, DF.observed, "observed", "Observed address")
        return a and ("observed=" .. a)
    end,
    [0x03] = function(c, t)
        local r = c:field(t, DF.target, 32, "target")
        return r and ("target=" .. short_id(c.tvb, r:offset()))
    end,
    [0x05] = function(c, t)
        local r = c:field(t, DF.key, 32, "key")
        return r and ("key=" .. short_id(c.tvb, r:offset()))
    end,
    [0x04] = function(c, t)
        local n = dht_contacts(c, t)
        return n and ("contacts=" .. n)
    end,
    [0x06] = function(c, t)
        if not c:field(t, DF.token, TOKEN_LEN, "token") then return nil end
        local p = c:count(t, DF.provider_count, "provider_count", MAX_PROVIDERS, 7)
        if not p then return nil end
        for i = 1, p do
            local a, item = c:address(t, DF.provider, "provider " .. i, "Provider " .. i)
            if not a then return nil end
            if a:match("^0%.0%.0%.0:") or a:match("^%[::%]:") then
                -- dht.md 4.6: the responder itself, at the datagram's source IP (and port, if 0).
                item:append_text(a:match(":0$") and " (the responder itself, at this datagram's source address)"
                    or " (the responder itself, at this datagram's source IP)")
            end
        end
        local n = dht_contacts(c, t)
        if not n then return nil end
        local extra = ""
        if c.rendezvous then
            local rn = c:count(t, DF.rendezvous_count, "rendezvous_count", MAX_RENDEZVOUS, 7 + 32 + 7)
            if not rn then return nil end
            for i = 1, rn do
                local start = c.off
                local sub = t:add(DF.rv_record, c.tvb(start, math.min(c:remaining(), 19 + 32 + 19)))
                sub:append_text(" " .. i)
                local pa = c:address(sub, DF.provider, "provider", "Provider")
                if not pa or not c:field(sub, DF.node_id, 32, "node_id") then return nil end
                local ra = c:address(sub, DF.rendezvous, "rendezvous", "Rendezvous")
                if not ra then return nil end
                sub:set_len(c.off - start)
                sub:append_text(": " .. pa .. " via " .. ra)
            end
            extra = " rendezvous=" .. rn
        end
        if c.provider_ids then
            -- dht.md 4.6: bit 2 (PROVIDER_IDS) adds one node ID per provider.
            for i = 1, p do
                if not c:field(t, DF.provider_id, 32, "provider_id") then return nil end
            end
            extra = extra .. " with IDs"
        end
        return string.format("providers=%d contacts=%d%s", p, n, extra)
    end,
    [0x13] = function(c, t)
        if not c:field(t, DF.challenge, 32, "nonce") then return nil end
        local a = c:address(t, DF.addr, "addr", "Address (the prover's, as the verifier sent to it)")
        return a and ("addr=" .. a)
    end,
    [0x14] = function(c, t)
        local k = c:field(t, DF.public_key, 32, "public_key")
        if not k or not c:field(t, DF.signature, 64, "signature") then return nil end
        return "key=" .. short_id(c.tvb, k:offset())
    end,
    [0x07] = function(c, t)
        local k = c:field(t, DF.key, 32, "key")
        if not k or not c:field(t, DF.token, TOKEN_LEN, "token") then return nil end
        local pr = c:field(t, DF.port, 2, "port")
        if not pr then return nil end
        local port = pr:uint()
        local extra = rendezvous_part(c, t, "Rendezvous")
        if not extra then return nil end
        return string.format("key=%s port=%s%s", short_id(c.tvb, k:offset()),
            port == 0 and "0 (UDP source port)" or tostring(port), extra)
    end,
    [0x11] = function(c, t)
        if not c:field(t, DF.token, TOKEN_LEN, "token") then return nil end
        local pr = c:field(t, DF.port, 2, "port")
        if not pr then return nil end
        local at = c.off
        local max = c.rendezvous and MAX_ANNOUNCE_KEYS_RENDEZVOUS or MAX_ANNOUNCE_KEYS
        local n = c:count(t, DF.key_count, "key_count", max, 32)
        if not n then return nil end
        if n == 0 then
            c:fail("InvalidValue", "key_count 0: an ANNOUNCE_MANY carries at least one key", t, at)
            return nil
        end
        for i = 1, n do
            if not c:field(t, DF.key, 32, "key") then return nil end
        end
        local extra = rendezvous_part(c, t, "Rendezvous (for every key)")
        if not extra then return nil end
        return string.format("keys=%d port=%d%s", n, pr:uint(), extra)
    end,
    [0x12] = function(c, t)
        local at = c.off
        local r = c:field(t, DF.stored, 1, "stored")
        if not r then return nil end
        if r:uint() > MAX_ANNOUNCE_KEYS then
            c:fail("LengthTooLarge", string.format("stored %d > maximum %d", r:uint(), MAX_ANNOUNCE_KEYS), t, at)
            return nil
        end
        return "stored=" .. r:uint()
    end,
    [0x09] = function(c, t)
        local nr = c:field(t, DF.nonce, 8, "nonce")
        local pr = nr and c:field(t, DF.port, 2, "port")
        return pr and string.format("nonce=%s port=%d", hex_of(nr:raw()), pr:uint())
    end,
    [0x0a] = function() return "" end,
    [0x10] = function() return "" end,
    [0x0b] = function(c, t)
        local pr = c:field(t, DF.port, 2, "port")
        return pr and ("port=" .. pr:uint())
    end,
    [0x0c] = function(c, t)
        local lr = c:field(t, DF.lifetime, 2, "lifetime")
        return lr and ("lifetime=" .. lr:uint() .. "s")
    end,
    [0x0d] = function(c, t)
        local r = c:field(t, DF.target, 32, "target")
        local pr = r and c:field(t, DF.port, 2, "port")
        return pr and string.format("target=%s port=%d", short_id(c.tvb, r:offset()), pr:uint())
    end,
    [0x0e] = function(c, t)
        local a = c:address(t, DF.addr, "addr", "Address")
        local pr = a and c:field(t, DF.port, 2, "port")
        return pr and string.format("addr=%s port=%d", a, pr:uint())
    end,
    [0x0f] = function(c, t)
        local mr = c:field(t, DF.mode, 1, "mode")
        if not mr then return nil end
        local mode = mr:uint()
        if not CALL_MODES[mode] then
            c:fail("InvalidValue", "mode " .. mode .. " is neither 1 (PUNCH) nor 2 (RELAY)", t, mr:offset())
            return nil
        end
        if not c:field(t, DF.nonce, 8, "nonce") then return nil end
        local ir = c:field(t, DF.peer_id, 32, "peer_id")
        if not ir then return nil end
        local a = c:address(t, DF.addr, "addr", "Address")
        local pr = a and c:field(t, DF.port, 2, "port")
        return pr and string.format("mode=%s peer=%s addr=%s", CALL_MODES[mode],
            short_id(c.tvb, ir:offset()), a)
    end,
    [0x7f] = function(c, t)
        local cr = c:field(t, DF.error_code, 2, "error_code")
        if not cr then return nil end
        local s = c:text(t, DF.text_len, DF.text, "text_len", "text", MAX_ERROR_TEXT)
        if not s then return nil end
        local code = cr:uint()
        if not DHT_ERROR_CODES[code] then
            t:add_proto_expert_info(DE.note, "error code " .. code .. " is not defined in version 1")
        end
        return string.format("code=%s %s", DHT_ERROR_CODES[code] or tostring(code), quote(s))
    end,
}

local function dissect_dht(tvb, pinfo, tree)
    local n = tvb:len()
    pinfo.cols.protocol = "PS-DHT"
    local root = tree:add(dht, tvb())
    local c = new_cursor(tvb, 0, n, root, DF, DE)
    local name, summary, t = nil, nil, nil
    guarded(root, DE, function()
        local size = tvb:reported_len()
        if size > DHT_MAX_DATAGRAM then
            c:fail("TooLarge", string.format("datagram of %d bytes > MAX_DATAGRAM %d", size, DHT_MAX_DATAGRAM))
            return
        end
        if not c:need(2, "magic") then return end
        local mr = c:take(2)
        root:add(DF.magic, mr, (mr:raw():gsub("[^%g]", "?")))
        if mr:raw() ~= "PS" then
            c:fail("BadMagic", "magic is " .. hex_of(mr:raw()) .. ", not 5053 (\"PS\")", nil, 0)
            return
        end
        local vr = c:field(root, DF.version, 1, "version")
        if not vr then return end
        if vr:uint() ~= 1 then
            c:fail("UnsupportedVersion", "version " .. vr:uint() .. ", this dissector knows version 1", nil, 2)
            return
        end
        local tr = c:field(root, DF.type, 1, "type")
        if not tr then return end
        t = tr:uint()
        name = DHT_TYPES[t]
        local tn = root:add(DF.type_name, tr, name or "UNKNOWN")
        tn:set_generated()
        if not c:need(1, "flags") then return end
        local fr = c:take(1)
        local ft = root:add(DF.flags, fr)
        ft:add(DF.flag_not_reachable, fr)
        -- The bits each type defines (dht.md section 2); the others are reserved.
        local known = { 1 }
        if t == 0x06 or t == 0x07 then known[#known + 1] = 2 end
        if t == 0x05 or t == 0x06 then known[#known + 1] = 4 end
        if t == 0x0b or t == 0x0e then
            known[#known + 1] = 8
            ft:add(DF.flag_ports_vary, fr)
        end
        ft:add(DF.flag_reserved, fr)
        local rest = fr:uint()
        for _, b in ipairs(known) do
            if math.floor(rest / b) % 2 == 1 then rest = rest - b end
        end
        if rest > 0 then
            ft:add_proto_expert_info(DE.chat, "reserved flag bits set: valid, ignored by receivers")
        end
        local xr = c:field(root, DF.txid, 8, "txid")
        if not xr then return end
        local sr = c:field(root, DF.sender, 32, "sender_id")
        if not sr then return end
        if not name then
            c:fail("UnknownMessageType", string.format("type 0x%02x is not defined", t), nil, 3)
            return
        end
        root:append_text(", " .. name)
        -- nat.md: bit 1 (RENDEZVOUS) of ANNOUNCE, ANNOUNCE_MANY and PROVIDERS adds a
        -- rendezvous part.
        c.rendezvous = (t == 0x06 or t == 0x07 or t == 0x11) and (math.floor(fr:uint() / 2) % 2 == 1)
        c.provider_ids = (t == 0x06) and (math.floor(fr:uint() / 4) % 2 == 1)
        local s = DHT_BODY[t](c, root)
        if not s then return end
        c:finish(root)
        if c.err then return end
        summary = s

        -- Request/response matching (only for well-formed datagrams).
        local txid = hex_of(xr:raw())
        local src = tostring(pinfo.src) .. ":" .. pinfo.src_port
        local dst = tostring(pinfo.dst) .. ":" .. pinfo.dst_port
        local is_resp = DHT_RESPONSE[t]
        local key = txid .. "|" .. (is_resp and (dst .. "|" .. src) or (src .. "|" .. dst))
        local e = dht_tx[key]
        if not pinfo.visited then
            if not is_resp then
                dht_tx[key] = { req = pinfo.number, ts = pinfo.abs_ts }
            elseif e and not e.resp then
                e.resp = pinfo.number
            end
        end
        if e then
            if not is_resp and e.req == pinfo.number and e.resp then
                root:add(DF.response_in, e.resp):set_generated()
            elseif is_resp and e.resp == pinfo.number then
                root:add(DF.request_in, e.req):set_generated()
                local d = pinfo.abs_ts - e.ts
                if d >= 0 then
                    local secs = math.floor(d)
                    root:add(DF.rtt, NSTime.new(secs, math.floor((d - secs) * 1e9))):set_generated()
                end
            end
        end
    end)
    local info
    if c.err then
        info = string.format("%s [%s: %s]", name or "Malformed", c.err, c.detail or "")
    else
        info = name .. (summary ~= "" and (" " .. summary) or "")
        if t then
            info = info .. string.format(" txid=%s", hex_of(tvb:raw(5, 8)))
        end
    end
    pinfo.cols.info:set(info)
    return n
end

function dht.dissector(tvb, pinfo, tree)
    if tvb:len() == 0 then return 0 end
    return dissect_dht(tvb, pinfo, tree)
end

-- UDP heuristic: magic "PS", version 1, and at least a whole header.
local function heur_dht(tvb, pinfo, tree)
    if tvb:len() < DHT_HEADER_LEN or tvb:len() > DHT_MAX_DATAGRAM then return false end
    if tvb:raw(0, 2) ~= "PS" or tvb(2, 1):uint() ~= 1 then return false end
    pinfo.conversation = dht
    dissect_dht(tvb, pinfo, tree)
    return true
end

---------------------------------------------------------------------------------------------
-- Wire protocol (wire.md): length-prefixed frames on a TCP stream
---------------------------------------------------------------------------------------------

-- Per TCP stream: the content ID of its HANDSHAKE.
local tcp_stream_f = Field.new("tcp.stream")
local stream_content = {}
-- Whether the frame being dissected is the first of its segment (for the Info column).
local first_in_segment = true

-- Whether a frame header (length, type) passes the checks a receiver makes before buffering
-- the body; returns nil or (kind, detail).
local function header_error(length, t)
    if length == 0 then
        return "InvalidValue", "length 0, but every frame holds at least its type byte"
    end
    if length > MAX_FRAME_LEN then
        return "TooLarge", string.format("length %d > MAX_FRAME_LEN %d", length, MAX_FRAME_LEN)
    end
    if t == nil then return nil end
    local d = WIRE_TYPES[t]
    if not d then
        return "UnknownMessageType", string.format("type 0x%02x is not defined", t)
    end
    local body = length - 1
    if d.exact and body > d.exact then
        return "TrailingBytes", string.format("%s body is %d bytes, its layout has %d (%d byte(s) too many)",
            d.name, body, d.exact, body - d.exact)
    end
    if d.max and body > d.max then
        return "TooLarge", string.format("%s length %d > its largest %d", d.name, length, d.max + 1)
    end
    return nil
end

-- dissect_tcp_pdus length function: the frame's size, or (for a header a receiver rejects at
-- once) what remains of the segment, so the bad bytes are shown instead of waited for.
local function wire_pdu_len(tvb, pinfo, offset)
    local rem = tvb:len() - offset
    local length = tvb(offset, 4):uint()
    local t = rem >= 5 and tvb(offset + 4, 1):uint() or nil
    if header_error(length, t) then return rem end
    return 4 + length
end

local function bitfield_body(c, t, count_r)
    local count = count_r:uint()
    local at = count_r:offset()
    if count > MAX_CHUNKS then
        c:fail("LengthTooLarge", string.format("chunk_count %d > MAX_CHUNKS %d", count, MAX_CHUNKS), t, at)
        return nil
    end
    local nbytes = math.ceil(count / 8)
    if not c:need(nbytes, "bits", t) then return nil end
    local bits_at = c.off
    local present = {}
    local br
    if nbytes > 0 then
        br = c:take(nbytes)
        local bi = t:add(WF.bf_bits, br)
        local raw = br:raw()
        for i = 1, nbytes do
            local b = raw:byte(i)
            if b ~= 0 then
                for k = 0, 7 do
                    if bit_set(b, k) then present[#present + 1] = (i - 1) * 8 + k end
                end
            end
        end
        local used = count % 8
        if used ~= 0 and raw:byte(nbytes) % 2 ^ (8 - used) ~= 0 then
            c:fail("InvalidValue", "a spare bit after the last chunk is set", bi, bits_at + nbytes - 1)
            return nil
        end
    end
    t:add(WF.bf_have, count_r, #present):set_generated()
    if #present > 0 then
        t:add(WF.bf_chunks, br, ranges_text(present, 200)):set_generated()
    end
    return string.format("chunks=%d have=%d", count, #present), { count = count }
end

-- The header of a manifest whose magic is `magic`, when a MANIFEST_DATA piece starts it: the
-- magic, then each row {field, offset, length} that the piece holds whole.
local function header_rows(t, dr, magic, title, len, rows)
    if dr:len() < 4 or dr:raw(0, 4) ~= magic then return nil end
    local sub = t:add(dr(0, math.min(dr:len(), len)), title)
    sub:add(WF.mf_magic, dr(0, 4), magic)
    for _, r in ipairs(rows) do
        if dr:len() >= r[2] + r[3] then sub:add(r[1], dr(r[2], r[3])) end
    end
    return sub
end

-- The manifest header (content.md section 2); returns the chunk count.
local function manifest_header(t, dr)
    local sub = header_rows(t, dr, "PSMF", "Manifest header (content.md, section 2)", 53, {
        { WF.mf_version, 4, 1 }, { WF.mf_file_size, 5, 8 }, { WF.mf_chunk_size, 13, 4 },
        { WF.mf_chunk_count, 17, 4 }, { WF.mf_file_sha256, 21, 32 } })
    return sub and dr:len() >= 21 and dr(17, 4):uint() or nil
end

-- The tree manifest header (content.md section 10.1), a shared folder's; returns the chunk
-- count (the manifest's field of that name) and the entry count.
local function tree_header(t, dr)
    local sub = header_rows(t, dr, "PSTR", "Tree manifest header (content.md, section 10)", 25, {
        { WF.mf_version, 4, 1 }, { WF.tr_entry_count, 5, 4 }, { WF.tr_total_size, 9, 8 },
        { WF.mf_chunk_count, 17, 4 }, { WF.tr_entries_len, 21, 4 } })
    if not sub or dr:len() < 21 then return nil end
    return dr(17, 4):uint(), dr(5, 4):uint()
end

local WIRE_BODY = {
    [0x00] = function() return "" end,
    [0x0b] = function() return "" end,
    [0x0c] = function() return "" end,
    [0x0d] = function() return "" end,
    [0x0e] = function() return "" end,
    [0x01] = function(c, t, pinfo)
        if not c:need(4, "magic", t) then return nil end
        local mr = c:take(4)
        t:add(WF.hs_magic, mr, (mr:raw():gsub("[^%g]", "?")))
        if mr:raw() ~= "PSWP" then
            c:fail("InvalidValue", "magic is " .. hex_of(mr:raw()) .. ", not 50535750 (\"PSWP\")", t, mr:offset())
            return nil
        end
        local vr = c:field(t, WF.hs_version, 1, "version")
        if not vr then return nil end
        if vr:uint() ~= 1 then
            c:fail("UnsupportedVersion", "version " .. vr:uint() .. ", this dissector knows version 1", t, vr:offset())
            return nil
        end
        local fr = c:field(t, WF.hs_flags, 1, "flags")
        if not fr then return nil end
        local nr = c:field(t, WF.node_id, 32, "node_id")
        if not nr then return nil end
        local cr = c:field(t, WF.content_id, 32, "content_id")
        if not cr then return nil end
        local pr = c:field(t, WF.listen_port, 2, "listen_port")
        if not pr then return nil end
        if fr:uint() ~= 0 then
            t:add_proto_expert_info(WE.chat, "reserved flag bits set: valid, ignored by receivers")
        end
        return string.format("node=%s content=%s port=%d", short_id(c.tvb, nr:offset()),
            short_id(c.tvb, cr:offset()), pr:uint()), { content = hex_of(cr:raw()) }
    end,
    [0x02] = function(c, t)
        local at = c.off
        local s = c:text(t, WF.name_len, WF.name, "name_len", "name", 255)
        if not s then return nil end
        if s == "" then
            c:fail("InvalidValue", "name is empty: a file name has at least one byte", t, at)
            return nil
        end
        return "name=" .. quote(s)
    end,
    [0x03] = function(c, t)
        local o = c:field(t, WF.mreq_offset, 4, "offset")
        if not o then return nil end
        local l = c:field(t, WF.mreq_length, 4, "length")
        if not l then return nil end
        if l:uint() == 0 then
            c:fail("InvalidValue", "length 0: a manifest request asks for at least one byte", t, l:offset())
            return nil
        end
        if l:uint() > MAX_MANIFEST_PIECE then
            c:fail("LengthTooLarge", string.format("length %d > MAX_MANIFEST_PIECE %d", l:uint(),
                MAX_MANIFEST_PIECE), t, l:offset())
            return nil
        end
        return string.format("offset=%d len=%d", o:uint(), l:uint())
    end,
    [0x04] = function(c, t)
        local tr = c:field(t, WF.mdata_total, 4, "total_len")
        if not tr then return nil end
        local total = tr:uint()
        if total > MAX_MANIFEST_LEN then
            c:fail("LengthTooLarge", string.format("total_len %d > MAX_MANIFEST_LEN %d", total,
                MAX_MANIFEST_LEN), t, tr:offset())
            return nil
        end
        local o = c:field(t, WF.mreq_offset, 4, "offset")
        if not o then return nil end
        local d = c:remaining()
        if d == 0 then
            -- Reported at the length field: it leaves no room for data.
            c:fail("InvalidValue", "no data: manifest data carries at least one byte", t, 0)
            return nil
        end
        local dr = c:take(d)
        local di = t:add(WF.mdata_data, dr)
        di:append_text(string.format(" (%d bytes)", d))
        t:add(WF.mdata_len, dr, d):set_generated()
        if o:uint() + d > total then
            c:fail("InvalidValue", string.format("offset %d + %d data byte(s) is beyond total_len %d",
                o:uint(), d, total), t, o:offset())
            return nil
        end
        local extra = ""
        if o:uint() == 0 then
            local chunks = manifest_header(di, dr)
            local entries
            if not chunks then chunks, entries = tree_header(di, dr) end
            if entries then extra = " entries=" .. entries end
            if chunks then extra = extra .. " chunks=" .. chunks end
        end
        return string.format("total=%d offset=%d len=%d%s", total, o:uint(), d, extra)
    end,
    [0x05] = function(c, t)
        local r = c:field(t, WF.bf_count, 4, "chunk_count")
        if not r then return nil end
        return bitfield_body(c, t, r)
    end,
    [0x06] = function(c, t)
        local r = c:field(t, WF.chunk, 4, "chunk")
        return r and ("chunk=" .. r:uint())
    end,
    [0x08] = function(c, t)
        local r = c:field(t, WF.chunk, 4, "chunk")
        if not r then return nil end
        local d = c:remaining()
        if d == 0 then
            c:fail("InvalidValue", "no data: every chunk has at least one byte", t, 0)
            return nil
        end
        local dr = c:take(d)
        t:add(WF.piece_data, dr):append_text(string.format(" (%d bytes)", d))
        t:add(WF.piece_len, dr, d):set_generated()
        return string.format("chunk=%d len=%d", r:uint(), d)
    end,
    [0x0a] = function(c, t)
        local r = c:field(t, WF.chunk, 4, "chunk")
        if not r then return nil end
        local rr = c:field(t, WF.reason, 1, "reason")
        if not rr then return nil end
        local reason = rr:uint()
        if not REJECT_REASONS[reason] then
            t:add_proto_expert_info(WE.note, "reject reason " .. reason
                .. " is not defined in version 1 (decodes normally)")
        end
        return string.format("chunk=%d reason=%s", r:uint(), REJECT_REASONS[reason] or tostring(reason))
    end,
    [0x0f] = function(c, t)
        -- wire.md 4.16: each entry an address, then the node ID the peer proved to the sender.
        local n = c:count(t, WF.peer_count, "peer_count", MAX_PEERS, 7 + 32)
        if not n then return nil end
        local list = {}
        for i = 1, n do
            local start = c.off
            local sub = t:add(WF.peer, c.tvb(start, math.min(c:remaining(), 19 + 32)))
            sub:append_text(" " .. i)
            local a = c:address(sub, WF.peer_addr, "peer", "Address")
            if not a then return nil end
            local ir = c:field(sub, WF.peer_id, 32, "peer_id")
            if not ir then return nil end
            sub:set_len(c.off - start)
            sub:append_text(": " .. a .. ", node " .. short_id(c.tvb, ir:offset()))
            list[#list + 1] = a
        end
        local s = "peers=" .. n
        if n > 0 then s = s .. " " .. table.concat(list, " ", 1, math.min(n, 3)) .. (n > 3 and " ..." or "") end
        return s
    end,
    [0x10] = function(c, t)
        local cr = c:field(t, WF.error_code, 2, "error_code")
        if not cr then return nil end
        local s = c:text(t, WF.text_len, WF.text, "text_len", "text", MAX_ERROR_TEXT)
        if not s then return nil end
        local code = cr:uint()
        if not WIRE_ERROR_CODES[code] then
            t:add_proto_expert_info(WE.note, "error code " .. code .. " is not defined in version 1")
        end
        return string.format("code=%s %s", WIRE_ERROR_CODES[code] or tostring(code), quote(s))
    end,
    -- NAT traversal (nat.md)
    [0x11] = function(c, t)
        local r = c:field(t, WF.nonce, 8, "nonce")
        return r and ("nonce=" .. hex_of(r:raw()))
    end,
    [0x12] = function(c, t)
        local r = c:field(t, WF.relay_node, 32, "node_id")
        local n = r and c:field(t, WF.nonce, 8, "nonce")
        return n and string.format("node=%s nonce=%s", short_id(c.tvb, r:offset()), hex_of(n:raw()))
    end,
    [0x13] = function() return "" end,
}
WIRE_BODY[0x07] = WIRE_BODY[0x06]
WIRE_BODY[0x09] = WIRE_BODY[0x06]

-- The Info column: the first PDU of a segment sets it, the others are appended.
local function show_info(pinfo, info)
    if first_in_segment then
        pinfo.cols.info:set(info)
        first_in_segment = false
    else
        pinfo.cols.info:append(", " .. info)
    end
end

-- One frame (tvb = exactly the frame, or the rest of the segment after a bad header).
local function dissect_wire_frame(tvb, pinfo, tree)
    local n = tvb:len()
    local root = tree:add(wire, tvb())
    local c = new_cursor(tvb, 0, n, root, WF, WE)
    local name, summary, t
    guarded(root, WE, function()
        if not c:need(4, "length") then return end
        local lr = c:take(4)
        root:add(WF.length, lr)
        local length = lr:uint()
        if n >= 5 then t = tvb(4, 1):uint() end
        local kind, detail = header_error(length, nil)
        if kind then
            c:fail(kind, detail, nil, 0)
            return
        end
        if not c:need(1, "type") then return end
        local tr = c:take(1)
        root:add(WF.type, tr)
        name = WIRE_TYPE_NAMES[t]
        root:add(WF.type_name, tr, name or "UNKNOWN"):set_generated()
        kind, detail = header_error(length, t)
        if kind then
            c:fail(kind, detail, nil, kind == "UnknownMessageType" and 4 or 0)
            return
        end
        root:append_text(", " .. name)
        if n < 4 + length then
            -- Only when TCP reassembly is off, or the capture cut the segment short: the rest
            -- of the frame is not here, so its body is not checked.
            local why = tvb:reported_len() > n and "the capture cut this segment short (snapshot length)"
                or "the frame goes on in later segments: enable TCP reassembly (tcp.desegment_tcp_streams)"
            root:add_proto_expert_info(WE.note, string.format("frame of %d bytes, %d here: %s",
                4 + length, n, why))
            summary = string.format("(%d of %d bytes)", n, 4 + length)
            return
        end
        c.stop = 4 + length
        local s, extra = WIRE_BODY[t](c, root, pinfo)
        if not s then return end
        c:finish(root)
        if c.err then return end
        summary = s
        local ok, stream = pcall(function() return tcp_stream_f() end)
        local sid = ok and stream and stream.value
        if sid then
            if t == 0x01 and extra and not pinfo.visited then
                stream_content[sid] = stream_content[sid] or extra.content
            end
            if t ~= 0x01 and stream_content[sid] then
                root:add(WF.conn_content, stream_content[sid]):set_generated()
            end
        end
    end)
    local info
    if c.err then
        info = string.format("%s [%s: %s]", name or "Malformed", c.err, c.detail or "")
    else
        info = name .. ((summary and summary ~= "") and (" " .. summary) or "")
    end
    show_info(pinfo, info)
    return n
end

-- Secure sessions (secure.md), by TCP stream: the initiator's port and, per PDU (frame
-- number and offset: tshark's two passes see them again), what it is.
local secure_streams = {}
local secure_labels = {}

-- Whether a segment starts with msg1: length 37, then e, then "PSWP" 3 (or 2, an older
-- version's dialer, shown the same way).
local function is_msg1(tvb)
    if tvb:len() < 39 or tvb(0, 2):uint() ~= 37 then return false end
    local hello = tvb:raw(34, 5)
    return hello == "PSWP\3" or hello == "PSWP\2"
end

local function current_stream()
    local ok, stream = pcall(function() return tcp_stream_f() end)
    return ok and stream and stream.value or nil
end

local function secure_pdu_len(tvb, pinfo, offset)
    return 2 + tvb(offset, 2):uint()
end

local SEC_NAMES = {
    msg1 = "handshake msg1 (-> e, HELLO)",
    msg2 = "handshake msg2 (<- e, ee, s, es, identity proof)",
    msg3 = "handshake msg3 (-> s, se, identity proof)",
    record = "record",
}

local function dissect_secure_pdu(tvb, pinfo, tree)
    local sid = current_stream()
    local st = secure_streams[sid]
    local key = pinfo.number .. ":" .. tvb:offset()
    local label = secure_labels[key]
    if not label and st then
        if pinfo.src_port == st.init_port then
            st.i = st.i + 1
            label = (st.i == 1 and "msg1") or (st.i == 2 and "msg3") or "record"
        else
            st.r = st.r + 1
            label = (st.r == 1 and "msg2") or "record"
        end
        secure_labels[key] = label
    end
    label = label or "record"
    local n = tvb:len()
    local root = tree:add(wire, tvb())
    root:append_text(", secure session: " .. SEC_NAMES[label])
    root:add(WF.sec_msg, tvb(0, math.min(n, 2)), SEC_NAMES[label])
    root:add(WF.sec_len, tvb(0, 2))
    if label == "msg1" and n >= 39 then
        root:add(WF.sec_ephemeral, tvb(2, 32))
        root:add(WF.sec_hello, tvb(34, 5), "PSWP, version " .. tvb(38, 1):uint())
    elseif n > 2 then
        root:add(WF.sec_ciphertext, tvb(2, n - 2))
    end
    local info = label == "record"
        and string.format("encrypted record, %d bytes", n - 2 - 16)
        or SEC_NAMES[label]
    show_info(pinfo, info)
    return n
end

function wire.dissector(tvb, pinfo, tree)
    if tvb:len() == 0 then return 0 end
    pinfo.cols.protocol = "PSWP"
    first_in_segment = true
    local sid = current_stream()
    if sid and not secure_streams[sid] and is_msg1(tvb) then
        secure_streams[sid] = { init_port = pinfo.src_port, i = 0, r = 0 }
    end
    if sid and secure_streams[sid] then
        dissect_tcp_pdus(tvb, tree, 2, secure_pdu_len, dissect_secure_pdu, true)
        return tvb:len()
    end
    -- A segment the capture cut short cannot be reassembled, so the frames of the stream
    -- cannot be followed: a segment that does not start with a valid frame header is most
    -- likely the middle of a frame, not a malformed one.
    if tvb:reported_len() > tvb:len() then
        local ok = tvb:len() >= 5 and not header_error(tvb(0, 4):uint(), tvb(4, 1):uint())
        if not ok then
            local item = tree:add(wire, tvb())
            item:append_text(", segment cut short by the capture")
            item:add_proto_expert_info(WE.note, "The capture kept only part of this segment "
                .. "(snapshot length): TCP reassembly is impossible, frame boundaries are lost")
            pinfo.cols.info:set("[continuation, cut short by the capture]")
            return tvb:len()
        end
    end
    dissect_tcp_pdus(tvb, tree, 4, wire_pdu_len, dissect_wire_frame, true)
    return tvb:len()
end

-- Whether a segment starts with plausible frame headers: every whole header in it passes
-- the receiver's checks, and the frames either fill the segment or the last one goes on.
local function plausible_frames(tvb)
    local n, off, frames = tvb:len(), 0, 0
    while off + 5 <= n do
        local length = tvb(off, 4):uint()
        local t = tvb(off + 4, 1):uint()
        if header_error(length, t) then return false end
        if t == 0x01 and (off + 9 > n or tvb:raw(off + 5, 4) ~= "PSWP") then return false end
        frames = frames + 1
        off = off + 4 + length
    end
    return frames > 0 and (off >= n)
end

-- TCP heuristic: a HANDSHAKE ("PSWP", version 1 length) or plausible frames mid-stream.
local function heur_wire(tvb, pinfo, tree)
    local n = tvb:len()
    if n < 5 then return false end
    local length = tvb(0, 4):uint()
    local t = tvb(4, 1):uint()
    local handshake = t == 0x01 and n >= 9 and tvb:raw(5, 4) == "PSWP"
        and length >= 1 + HANDSHAKE_BODY_LEN and length <= 1 + 1024
    local sid = current_stream()
    local secure = is_msg1(tvb) or (sid and secure_streams[sid])
    if not secure and not handshake and not (wire.prefs.midstream and plausible_frames(tvb)) then
        return false
    end
    pinfo.conversation = wire
    wire.dissector(tvb, pinfo, tree)
    return true
end

---------------------------------------------------------------------------------------------
-- Registration
---------------------------------------------------------------------------------------------

local registered = { udp = nil, tcp = nil }

local function register_ports()
    local udp_table = DissectorTable.get("udp.port")
    local tcp_table = DissectorTable.get("tcp.port")
    if registered.udp and registered.udp ~= dht.prefs.udp_port then
        udp_table:remove(registered.udp, dht)
        registered.udp = nil
    end
    if registered.tcp and registered.tcp ~= wire.prefs.tcp_port then
        tcp_table:remove(registered.tcp, wire)
        registered.tcp = nil
    end
    if not registered.udp and dht.prefs.udp_port ~= 0 then
        udp_table:add(dht.prefs.udp_port, dht)
        registered.udp = dht.prefs.udp_port
    end
    if not registered.tcp and wire.prefs.tcp_port ~= 0 then
        tcp_table:add(wire.prefs.tcp_port, wire)
        registered.tcp = wire.prefs.tcp_port
    end
end

function dht.prefs_changed() register_ports() end
function wire.prefs_changed() register_ports() end

function dht.init()
    dht_tx = {}
end

function wire.init()
    stream_content = {}
    secure_streams = {}
    secure_labels = {}
end

register_ports()
dht:register_heuristic("udp", heur_dht)
wire:register_heuristic("tcp", heur_wire)
