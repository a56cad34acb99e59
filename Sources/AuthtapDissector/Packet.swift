/// Link, network and transport layers of one captured packet, down to its TCP segment.
/// Pure and allocation-free until the payload is needed.
public struct TCPSegment: Sendable {
    public var source: Endpoint
    public var destination: Endpoint
    public var flags: UInt8
    public var seq: UInt32
    public var ack: UInt32
    /// Offset and length of the TCP payload inside the packet bytes.
    public var payloadOffset: Int
    public var payloadLength: Int

    public var syn: Bool { flags & 0x02 != 0 }
    public var fin: Bool { flags & 0x01 != 0 }
    public var rst: Bool { flags & 0x04 != 0 }
    public var ackFlag: Bool { flags & 0x10 != 0 }
}

/// An IP address (4 or 16 bytes, kept as two 64-bit halves) and a port.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var hi: UInt64
    public var lo: UInt64
    public var isV6: Bool
    public var port: UInt16

    public var address: String {
        if !isV6 {
            let v = UInt32(truncatingIfNeeded: lo)
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
        }
        var groups: [UInt16] = []
        for shift in stride(from: 48, through: 0, by: -16) {
            groups.append(UInt16(truncatingIfNeeded: hi >> UInt64(shift)))
        }
        for shift in stride(from: 48, through: 0, by: -16) {
            groups.append(UInt16(truncatingIfNeeded: lo >> UInt64(shift)))
        }
        // RFC 5952: compress the longest run of zero groups.
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8, groups[j] == 0 { j += 1 }
                if j - i > bestLen && j - i > 1 { bestStart = i; bestLen = j - i }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ r: ArraySlice<UInt16>) -> String { r.map { String($0, radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(groups[...]) }
        return hex(groups[..<bestStart]) + "::" + hex(groups[(bestStart + bestLen)...])
    }

    public var description: String { isV6 ? "[\(address)]:\(port)" : "\(address):\(port)" }
}

public enum PacketDecoder {
    /// Link-layer types (LINKTYPE_* values as pcap files carry them).
    public enum LinkType: Int32, Sendable {
        case null = 0, ethernet = 1, raw = 101, raw12 = 12, loop = 108, linuxSLL = 113, linuxSLL2 = 276, ipv4 = 228,
            ipv6 = 229
    }

    /// The TCP segment in a packet, or nil (not IP/TCP, a non-first fragment, or cut short).
    public static func tcp(_ p: UnsafeRawBufferPointer, linkType: Int32) -> TCPSegment? {
        guard let link = LinkType(rawValue: linkType) else { return nil }
        var offset = 0
        var etherType: UInt16 = 0
        switch link {
        case .ethernet:
            guard p.count >= 14 else { return nil }
            etherType = be16(p, 12)
            offset = 14
            var tags = 0
            while (etherType == 0x8100 || etherType == 0x88A8) && tags < 2 {
                guard p.count >= offset + 4 else { return nil }
                etherType = be16(p, offset + 2)
                offset += 4
                tags += 1
            }
        case .linuxSLL:
            guard p.count >= 16 else { return nil }
            etherType = be16(p, 14)
            offset = 16
        case .linuxSLL2:
            guard p.count >= 20 else { return nil }
            etherType = be16(p, 0)
            offset = 20
        case .null, .loop:
            guard p.count >= 4 else { return nil }
            // The address family, in the capturing host's byte order (NULL) or network order (LOOP).
            let le = UInt32(p[0]) | UInt32(p[1]) << 8 | UInt32(p[2]) << 16 | UInt32(p[3]) << 24
            let beFamily = UInt32(p[0]) << 24 | UInt32(p[1]) << 16 | UInt32(p[2]) << 8 | UInt32(p[3])
            let family = link == .loop ? beFamily : (le < 256 ? le : beFamily)
            etherType =
                family == 2 ? 0x0800 : (family == 10 || family == 24 || family == 28 || family == 30) ? 0x86DD : 0
            offset = 4
        case .raw, .raw12, .ipv4, .ipv6:
            guard p.count >= 1 else { return nil }
            etherType = p[0] >> 4 == 6 ? 0x86DD : 0x0800
        }
        switch etherType {
        case 0x0800: return ipv4(p, offset)
        case 0x86DD: return ipv6(p, offset)
        default: return nil
        }
    }

    static func ipv4(_ p: UnsafeRawBufferPointer, _ o: Int) -> TCPSegment? {
        guard p.count >= o + 20, p[o] >> 4 == 4 else { return nil }
        let ihl = Int(p[o] & 0x0F) * 4
        guard ihl >= 20, p.count >= o + ihl else { return nil }
        let total = Int(be16(p, o + 2))
        let fragment = be16(p, o + 6) & 0x1FFF
        guard fragment == 0, p[o + 9] == 6 else { return nil }
        let src = UInt64(be32(p, o + 12)), dst = UInt64(be32(p, o + 16))
        // The IP total length bounds the payload (Ethernet pads short frames).
        let end = total >= ihl ? min(p.count, o + total) : p.count
        return tcpHeader(p, o + ihl, end: end, src: (0, src, false), dst: (0, dst, false))
    }

    static func ipv6(_ p: UnsafeRawBufferPointer, _ o: Int) -> TCPSegment? {
        guard p.count >= o + 40, p[o] >> 4 == 6 else { return nil }
        let payloadLength = Int(be16(p, o + 4))
        var next = p[o + 6]
        let src = (be64(p, o + 8), be64(p, o + 16), true)
        let dst = (be64(p, o + 24), be64(p, o + 32), true)
        var h = o + 40
        let end = min(p.count, o + 40 + payloadLength)
        var hops = 0
        // Extension headers: hop-by-hop, routing, destination options, fragment, AH.
        while next != 6 && hops < 8 {
            hops += 1
            switch next {
            case 0, 43, 60:
                guard end >= h + 8 else { return nil }
                next = p[h]
                h += (Int(p[h + 1]) + 1) * 8
            case 44:
                guard end >= h + 8 else { return nil }
                let fragmentOffset = be16(p, h + 2) >> 3
                guard fragmentOffset == 0 else { return nil }
                next = p[h]
                h += 8
            case 51:
                guard end >= h + 8 else { return nil }
                next = p[h]
                h += (Int(p[h + 1]) + 2) * 4
            default:
                return nil
            }
        }
        guard next == 6 else { return nil }
        return tcpHeader(p, h, end: end, src: src, dst: dst)
    }

    static func tcpHeader(
        _ p: UnsafeRawBufferPointer, _ t: Int, end: Int, src: (UInt64, UInt64, Bool), dst: (UInt64, UInt64, Bool)
    ) -> TCPSegment? {
        guard end >= t + 20 else { return nil }
        let dataOffset = Int(p[t + 12] >> 4) * 4
        guard dataOffset >= 20, end >= t + dataOffset else { return nil }
        return TCPSegment(
            source: Endpoint(hi: src.0, lo: src.1, isV6: src.2, port: be16(p, t)),
            destination: Endpoint(hi: dst.0, lo: dst.1, isV6: dst.2, port: be16(p, t + 2)),
            flags: p[t + 13], seq: be32(p, t + 4), ack: be32(p, t + 8),
            payloadOffset: t + dataOffset, payloadLength: end - t - dataOffset)
    }

    @inline(__always) static func be16(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt16 {
        UInt16(p[i]) << 8 | UInt16(p[i + 1])
    }
    @inline(__always) static func be32(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt32 {
        UInt32(p[i]) << 24 | UInt32(p[i + 1]) << 16 | UInt32(p[i + 2]) << 8 | UInt32(p[i + 3])
    }
    @inline(__always) static func be64(_ p: UnsafeRawBufferPointer, _ i: Int) -> UInt64 {
        UInt64(be32(p, i)) << 32 | UInt64(be32(p, i + 4))
    }
}
