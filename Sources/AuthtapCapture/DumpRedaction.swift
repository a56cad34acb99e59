import AuthtapDissector

/// What a written pcap keeps of packets on the proxy's own listen port.
///
/// That port carries plaintext authtap never masked: CONNECT requests with `Proxy-Authorization`, and whole
/// plain `http://` requests and responses. A segment whose payload is a run of whole TLS records keeps its
/// bytes: the client leg's handshake is what Wireshark and `capture --read` need, and its ciphertext is no
/// more readable than the upstream leg's. Any other payload there is cut at the end of the TCP header; the
/// packet keeps its original length, so Wireshark shows it as cut by the snap length, and the packet
/// numbers stored with the handshake records still match the file.
public struct DumpRedaction: Sendable {
    public var ports: Set<UInt16>

    public init(ports: Set<UInt16> = []) {
        self.ports = ports
    }

    /// How many bytes of the packet go into the file.
    public func captureLength(_ packet: UnsafeRawBufferPointer, linkType: Int32) -> Int {
        if ports.isEmpty { return packet.count }
        // A packet whose ports cannot be read (a later IP fragment, an unknown link type) might belong to
        // the listen port: nothing of it is written, but it is still counted.
        guard let segment = PacketDecoder.tcp(packet, linkType: linkType) else { return 0 }
        guard ports.contains(segment.source.port) || ports.contains(segment.destination.port),
            segment.payloadLength > 0
        else { return packet.count }
        let start = segment.payloadOffset
        let payload = UnsafeRawBufferPointer(rebasing: packet[start..<(start + segment.payloadLength)])
        return Self.isWholeTLSRecords(payload) ? packet.count : start
    }

    /// True when the bytes are one or more complete TLS records and nothing else. Text never starts with
    /// a record header (content type 20–23, then 3), so a plaintext request or response never passes.
    public static func isWholeTLSRecords(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= 5 else { return false }
            let type = bytes[offset], major = bytes[offset + 1], minor = bytes[offset + 2]
            let length = Int(bytes[offset + 3]) << 8 | Int(bytes[offset + 4])
            // RFC 8446 §5.2: a record holds at most 2^14 + 256 bytes (2^14 + 2048 before TLS 1.3).
            guard (20...23).contains(type), major == 3, minor <= 4, length > 0, length <= 18_432 else { return false }
            offset += 5 + length
        }
        return offset == bytes.count && offset > 0
    }
}
