import AuthtapModel
import Foundation
import SwiftASN1
import X509

/// Tracks TCP connections and the plaintext start of their TLS handshakes, and turns every
/// attempt into one `HandshakeRecord`. Memory is bounded per connection and in total; idle
/// connections are classified and evicted.
public final class HandshakeTracker {
    public struct Limits: Sendable {
        public var maxConnections = 65_536
        /// Plaintext handshake bytes kept per direction.
        public var maxStreamBytes = 65_536
        /// Out-of-order segments kept per direction.
        public var maxOutOfOrder = 32
        /// A connection without packets for this long is classified and dropped.
        public var idleMicros: Int64 = 60_000_000
        public init() {}
    }

    final class Stream {
        var nextSeq: UInt32?
        var bytes: [UInt8] = []
        var outOfOrder: [UInt32: [UInt8]] = [:]
        var handshake: [UInt8] = []
        var encrypted = false
        var encryptedRecords = 0
        var firstEncryptedLength = 0
        var sentAny = false
        var overflow = false
        var firstPayloadSeq: UInt32?
    }

    final class Connection {
        let client: Endpoint
        let server: Endpoint
        var streams = [Stream(), Stream()]
        var synAt: Int64?
        var synAckAt: Int64?
        var firstPacket: Int
        var lastPacket: Int
        var startMicros: Int64
        var lastMicros: Int64
        var clientHello: TLSDissector.ClientHello?
        var clientHelloAt: Int64?
        var serverHello: TLSDissector.ServerHello?
        var helloRetry = false
        var certificate: Certificate?
        var clientHelloRetransmits = 0
        var synRetransmits = 0
        var done = false
        var notTLS = false

        init(client: Endpoint, server: Endpoint, packet: Int, at: Int64) {
            self.client = client
            self.server = server
            self.firstPacket = packet
            self.lastPacket = packet
            self.startMicros = at
            self.lastMicros = at
        }
        var isTLS13: Bool { serverHello?.selectedVersion == 0x0304 }
    }

    struct Key: Hashable {
        var a: Endpoint
        var b: Endpoint
        init(_ x: Endpoint, _ y: Endpoint) {
            if (x.hi, x.lo, x.port) < (y.hi, y.lo, y.port) { a = x; b = y } else { a = y; b = x }
        }
    }

    public let limits: Limits
    private var connections: [Key: Connection] = [:]
    private var emit: (HandshakeRecord) -> Void
    private var packetsSinceSweep = 0
    public private(set) var evicted = 0

    public init(limits: Limits = .init(), emit: @escaping (HandshakeRecord) -> Void) {
        self.limits = limits
        self.emit = emit
    }

    public var trackedConnections: Int { connections.count }

    /// Feeds one TCP segment; `packet` holds the bytes the segment's offsets refer to.
    public func feed(packetNumber: Int, micros: Int64, segment s: TCPSegment, packet: UnsafeRawBufferPointer) {
        packetsSinceSweep += 1
        if packetsSinceSweep >= 4096 {
            packetsSinceSweep = 0
            sweep(now: micros)
        }
        let key = Key(s.source, s.destination)
        var conn = connections[key]
        if s.syn && !s.ackFlag {
            if let c = conn, c.client == s.source, c.synAckAt == nil, c.streams[0].sentAny == false, !c.done {
                c.synRetransmits += 1
                c.lastPacket = packetNumber
                c.lastMicros = micros
                return
            }
            if let c = conn, !c.done { finish(c, at: micros, reason: .closed) }
            let c = Connection(client: s.source, server: s.destination, packet: packetNumber, at: micros)
            c.synAt = micros
            c.streams[0].nextSeq = s.seq &+ 1
            connections[key] = c
            if connections.count > limits.maxConnections { evictOldest() }
            return
        }
        if conn == nil {
            // A connection already open when the capture started: follow it only if the client's
            // first bytes are a TLS handshake record.
            guard s.payloadLength >= 6, !s.rst, packet[s.payloadOffset] == 0x16, packet[s.payloadOffset + 1] == 3,
                packet[s.payloadOffset + 5] == 1
            else { return }
            let c = Connection(client: s.source, server: s.destination, packet: packetNumber, at: micros)
            c.streams[0].nextSeq = s.seq
            connections[key] = c
            if connections.count > limits.maxConnections { evictOldest() }
            conn = c
        }
        guard let c = conn else { return }
        if c.done {
            // Classified already (completed, or ended): nothing more to learn; forget it on FIN/RST.
            if s.rst || s.fin { connections[key] = nil }
            return
        }
        c.lastPacket = packetNumber
        c.lastMicros = micros
        let fromClient = s.source == c.client
        let side = fromClient ? "client" : "server"
        if s.syn && s.ackFlag && !fromClient {
            c.synAckAt = micros
            c.streams[1].nextSeq = s.seq &+ 1
            return
        }
        if s.payloadLength > 0 {
            absorb(
                c, stream: c.streams[fromClient ? 0 : 1], fromClient: fromClient, seq: s.seq,
                payload: UnsafeRawBufferPointer(
                    rebasing: packet[s.payloadOffset..<(s.payloadOffset + s.payloadLength)]), at: micros)
            if c.done || c.notTLS {
                if c.notTLS { connections[key] = nil }
                return
            }
        }
        if s.rst {
            if !fromClient && c.synAckAt == nil && !c.streams[0].sentAny {
                record(
                    c, .refused, side: "server", at: micros,
                    detail: "the server answered the SYN with a RST: nothing listens on \(c.server.port)")
            } else if c.clientHello != nil && !c.streams[1].sentAny && fromClient {
                noServerHello(
                    c, at: micros, detail: "the client reset the connection after its ClientHello got no answer")
            } else {
                record(
                    c, .resetDuringHandshake, side: side, at: micros,
                    detail: "the \(side) reset the connection \(stage(c))")
            }
            connections[key] = nil
        } else if s.fin {
            if c.clientHello != nil && !c.streams[1].sentAny && fromClient {
                noServerHello(c, at: micros, detail: "the client closed after its ClientHello got no answer")
            } else {
                record(
                    c, .closedDuringHandshake, side: side, at: micros,
                    detail: "the \(side) closed the connection \(stage(c))")
            }
        }
    }

    /// End of the capture: every open attempt gets its record.
    public func finishAll(at micros: Int64) {
        for (_, c) in connections where !c.done { finish(c, at: micros, reason: .endOfCapture) }
        connections.removeAll()
    }

    enum EndReason { case endOfCapture, idle, closed }

    private func finish(_ c: Connection, at micros: Int64, reason: EndReason) {
        let why =
            reason == .idle
            ? "no packet for \(limits.idleMicros / 1_000_000) s"
            : reason == .endOfCapture ? "the capture ended" : "a new connection reused the ports"
        if c.synAt != nil && c.synAckAt == nil && !c.streams[0].sentAny {
            record(
                c, .synUnanswered, side: nil, at: c.lastMicros,
                detail: "no SYN-ACK (\(c.synRetransmits) SYN retransmissions) before \(why)")
        } else if c.clientHello != nil && !c.streams[1].sentAny {
            noServerHello(c, at: c.lastMicros, detail: "no answer to the ClientHello before \(why)")
        } else if c.clientHello == nil {
            // TCP only, no TLS seen: not a handshake attempt worth a record unless the server accepted and nothing followed.
            if c.synAckAt != nil {
                record(
                    c, .closedDuringHandshake, side: nil, at: c.lastMicros,
                    detail: "TCP connected but no ClientHello before \(why)")
            }
            c.done = true
        } else {
            record(
                c, .closedDuringHandshake, side: nil, at: c.lastMicros,
                detail: "the handshake did not finish before \(why) \(stage(c))")
        }
    }

    private func noServerHello(_ c: Connection, at micros: Int64, detail: String) {
        if c.clientHelloRetransmits > 0 {
            record(
                c, .clientHelloRetransmitted, side: nil, at: micros,
                detail:
                    "the ClientHello was sent \(c.clientHelloRetransmits + 1) times and never answered: a middlebox or firewall drops it (often by SNI or size)"
            )
        } else {
            record(
                c, .noServerHello, side: nil, at: micros,
                detail: detail + ": a middlebox or firewall dropped it, or the server does not speak TLS")
        }
    }

    private func stage(_ c: Connection) -> String {
        if c.serverHello != nil { return "after the ServerHello" + (c.certificate != nil ? " and certificate" : "") }
        if c.clientHello != nil { return "after the ClientHello" }
        return "before the ClientHello"
    }

    private func sweep(now: Int64) {
        var stale: [Key] = []
        for (k, c) in connections where now - c.lastMicros > limits.idleMicros { stale.append(k) }
        for k in stale {
            if let c = connections[k], !c.done { finish(c, at: now, reason: .idle) }
            connections[k] = nil
            evicted += 1
        }
    }

    private func evictOldest() {
        guard let (k, c) = connections.min(by: { $0.value.lastMicros < $1.value.lastMicros }) else { return }
        if !c.done { finish(c, at: c.lastMicros, reason: .idle) }
        connections[k] = nil
        evicted += 1
    }

    // MARK: streams

    private func absorb(
        _ c: Connection, stream st: Stream, fromClient: Bool, seq: UInt32, payload: UnsafeRawBufferPointer,
        at micros: Int64
    ) {
        if st.nextSeq == nil { st.nextSeq = seq }
        guard let next = st.nextSeq else { return }
        let delta = Int32(bitPattern: seq &- next)
        if delta < 0 {
            // Old data: a retransmission (possibly overlapping new bytes).
            if fromClient, st.firstPayloadSeq == seq, c.serverHello == nil, !c.streams[1].sentAny {
                c.clientHelloRetransmits += 1
            }
            let overlap = -Int(delta)
            guard overlap < payload.count else { return }
            append(c, st, fromClient: fromClient, Array(payload[overlap...]), at: micros)
            st.nextSeq = next &+ UInt32(truncatingIfNeeded: payload.count - overlap)
        } else if delta > 0 {
            if st.outOfOrder.count < limits.maxOutOfOrder {
                st.outOfOrder[seq] = Array(payload)
            } else {
                st.overflow = true
            }
            return
        } else {
            if st.firstPayloadSeq == nil { st.firstPayloadSeq = seq }
            append(c, st, fromClient: fromClient, Array(payload), at: micros)
            st.nextSeq = next &+ UInt32(truncatingIfNeeded: payload.count)
        }
        // Drain segments that are now in order.
        while let n = st.nextSeq, let data = st.outOfOrder.removeValue(forKey: n) {
            append(c, st, fromClient: fromClient, data, at: micros)
            st.nextSeq = n &+ UInt32(truncatingIfNeeded: data.count)
        }
    }

    private func append(_ c: Connection, _ st: Stream, fromClient: Bool, _ data: [UInt8], at micros: Int64) {
        st.sentAny = true
        guard !st.overflow, !c.done else { return }
        if st.bytes.count + data.count > limits.maxStreamBytes {
            st.overflow = true
            return
        }
        st.bytes += data
        parseRecords(c, st, fromClient: fromClient, at: micros)
    }

    private func parseRecords(_ c: Connection, _ st: Stream, fromClient: Bool, at micros: Int64) {
        var offset = 0
        let b = st.bytes
        defer { if offset > 0 { st.bytes.removeFirst(offset) } }
        while b.count - offset >= 5, !c.done {
            let type = b[offset]
            guard (20...23).contains(type), b[offset + 1] == 3 else {
                if !st.encrypted && c.clientHello == nil && fromClient { c.notTLS = true; c.done = true }
                return
            }
            let length = Int(b[offset + 3]) << 8 | Int(b[offset + 4])
            guard b.count - offset >= 5 + length else { return }
            let body = Array(b[(offset + 5)..<(offset + 5 + length)])
            offset += 5 + length
            let side = fromClient ? "client" : "server"
            switch type {
            case 22 where !st.encrypted:
                st.handshake += body
                parseHandshakeMessages(c, st, fromClient: fromClient, at: micros)
            case 21:
                if !st.encrypted && body.count == 2 {
                    let name = TLSDissector.alertName(body[1])
                    if body[1] == 0 {
                        record(
                            c, .closedDuringHandshake, side: side, at: micros,
                            detail: "the \(side) sent close_notify \(stage(c))");
                        return
                    }
                    let outcome: HandshakeRecord.Outcome = body[1] == 70 ? .versionMismatch : .alert
                    record(
                        c, outcome, side: side, at: micros, alert: name,
                        detail: "the \(side) sent a \(body[0] == 2 ? "fatal" : "warning") \(name) alert \(stage(c))")
                } else {
                    record(
                        c, .alert, side: side, at: micros, alert: "encrypted", encrypted: true,
                        detail: "the \(side) sent an encrypted alert \(stage(c))"
                            + (fromClient
                                ? ": usually the client rejecting the server's certificate (bad_certificate / unknown_ca)"
                                : ""))
                }
                return
            case 20:
                st.encrypted = true
            case 23, 22:
                st.encrypted = true
                st.encryptedRecords += 1
                if st.encryptedRecords == 1 { st.firstEncryptedLength = length }
                checkCompleted(c, at: micros)
            default:
                break
            }
        }
    }

    private func parseHandshakeMessages(_ c: Connection, _ st: Stream, fromClient: Bool, at micros: Int64) {
        var offset = 0
        let h = st.handshake
        defer { if offset > 0 { st.handshake.removeFirst(offset) } }
        while h.count - offset >= 4 {
            let length = Int(h[offset + 1]) << 16 | Int(h[offset + 2]) << 8 | Int(h[offset + 3])
            guard h.count - offset >= 4 + length else { return }
            let type = h[offset]
            let message = Array(h[(offset + 4)..<(offset + 4 + length)])
            offset += 4 + length
            switch type {
            case 1 where fromClient && c.clientHello == nil:
                c.clientHello = TLSDissector.parseClientHello(message)
                c.clientHelloAt = micros
            case 2 where !fromClient:
                guard let hello = TLSDissector.parseServerHello(message) else { continue }
                if message.count >= 34, Array(message[2..<34]) == Self.helloRetryRandom {
                    c.helloRetry = true
                    continue
                }
                c.serverHello = hello
                if let offered = c.clientHello, !offered.supportedVersions.isEmpty,
                    !offered.supportedVersions.contains(hello.selectedVersion)
                {
                    record(
                        c, .versionMismatch, side: "server", at: micros,
                        detail:
                            "the server chose \(TLSDissector.versionName(hello.selectedVersion)), which the client did not offer"
                    )
                    return
                }
                if hello.selectedVersion == 0x0304 { st.encrypted = true }
            case 11 where !fromClient && c.certificate == nil:
                // TLS ≤ 1.2: certificate_list<3> of cert_data<3>.
                if message.count >= 6 {
                    let first = Int(message[3]) << 16 | Int(message[4]) << 8 | Int(message[5])
                    if message.count >= 6 + first {
                        c.certificate = try? Certificate(derEncoded: Array(message[6..<(6 + first)]))
                    }
                }
            default:
                break
            }
        }
    }

    /// TLS 1.3 ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
    static let helloRetryRandom: [UInt8] = [
        0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
        0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
    ]

    private func checkCompleted(_ c: Connection, at micros: Int64) {
        guard c.serverHello != nil else { return }
        let client = c.streams[0], server = c.streams[1]
        guard client.encrypted, server.encrypted, client.encryptedRecords > 0 else { return }
        if c.isTLS13 && client.encryptedRecords == 1 && client.firstEncryptedLength <= 24 {
            // Too short for a Finished: an alert under the handshake keys. Wait for what follows.
            return
        }
        record(c, .completed, side: nil, at: micros, detail: "handshake completed")
    }

    private func record(
        _ c: Connection, _ outcome: HandshakeRecord.Outcome, side: String?, at micros: Int64,
        alert: String? = nil, encrypted: Bool = false, detail: String
    ) {
        guard !c.done else { return }
        var outcome = outcome
        var alert = alert
        var encrypted = encrypted
        var side = side
        var detail = detail
        // TLS 1.3: a short encrypted client record then a close is the client's alert.
        if c.isTLS13, outcome != .completed, outcome != .alert, c.streams[0].encryptedRecords == 1,
            c.streams[0].firstEncryptedLength <= 24
        {
            outcome = .alert
            alert = "encrypted"
            encrypted = true
            side = "client"
            detail =
                "the client sent an encrypted alert after the server's certificate, then closed: it does not trust the certificate (bad_certificate / unknown_ca)"
        }
        c.done = true
        let hello = c.clientHello
        let server = c.serverHello
        var cert: (String, String, [String], Date, Date)? = nil
        if let certificate = c.certificate {
            var sans: [String] = []
            if let ext = try? certificate.extensions.subjectAlternativeNames {
                for name in ext {
                    switch name {
                    case .dnsName(let d): sans.append(d)
                    case .ipAddress(let ip):
                        sans.append(
                            ip.bytes.count == 4
                                ? ip.bytes.map(String.init).joined(separator: ".")
                                : ip.bytes.map { String($0, radix: 16) }.joined(separator: ":"))
                    default: break
                    }
                }
            }
            cert = (
                certificate.subject.description, certificate.issuer.description, sans, certificate.notValidBefore,
                certificate.notValidAfter
            )
        }
        emit(
            HandshakeRecord(
                client: c.client.address, clientPort: Int(c.client.port), server: c.server.address,
                serverPort: Int(c.server.port),
                outcome: outcome, side: side, alert: alert, encryptedAlert: encrypted,
                sni: hello?.serverName, alpnOffered: hello?.alpn ?? [],
                versionsOffered: (hello?.supportedVersions ?? []).map(TLSDissector.versionName),
                cipherSuitesOffered: hello?.cipherSuites.count ?? 0,
                serverVersion: server.map { TLSDissector.versionName($0.selectedVersion) },
                cipher: server.map { TLSDissector.cipherName($0.cipherSuite) },
                alpn: server?.alpn, helloRetryRequest: c.helloRetry,
                certificateSubject: cert?.0, certificateIssuer: cert?.1, certificateSANs: cert?.2 ?? [],
                certificateNotBefore: cert?.3, certificateNotAfter: cert?.4,
                startMicros: c.startMicros, endMicros: micros,
                durationMs: outcome == .completed ? c.clientHelloAt.map { Double(micros - $0) / 1000 } : nil,
                firstPacket: c.firstPacket, lastPacket: c.lastPacket, clientHelloRetransmits: c.clientHelloRetransmits,
                detail: detail))
        // Drop buffers now: a finished attempt keeps only its identity until its FIN/RST.
        c.streams = [Stream(), Stream()]
    }
}
