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
    var connections: [Key: Connection] = [:]
    var emit: (HandshakeRecord) -> Void
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
        if s.syn && !s.ackFlag {
            opening(s, key: key, packetNumber: packetNumber, at: micros)
            return
        }
        guard let c = connections[key] ?? adoptOpen(s, key: key, packetNumber: packetNumber, at: micros, packet)
        else { return }
        if c.done {
            // Classified already (completed, or ended): nothing more to learn; forget it on FIN/RST.
            if s.rst || s.fin { connections[key] = nil }
            return
        }
        c.lastPacket = packetNumber
        c.lastMicros = micros
        let fromClient = s.source == c.client
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
            reset(c, fromClient: fromClient, at: micros)
            connections[key] = nil
        } else if s.fin {
            closed(c, fromClient: fromClient, at: micros)
        }
    }

    /// A SYN: a retransmission of the one that opened the attempt, or a new attempt (which ends an old one on
    /// the same ports).
    private func opening(_ s: TCPSegment, key: Key, packetNumber: Int, at micros: Int64) {
        if let c = connections[key], c.client == s.source, c.synAckAt == nil, c.streams[0].sentAny == false,
            !c.done
        {
            c.synRetransmits += 1
            c.lastPacket = packetNumber
            c.lastMicros = micros
            return
        }
        if let c = connections[key], !c.done { finish(c, at: micros, reason: .closed) }
        let c = Connection(client: s.source, server: s.destination, packet: packetNumber, at: micros)
        c.synAt = micros
        c.streams[0].nextSeq = s.seq &+ 1
        connections[key] = c
        if connections.count > limits.maxConnections { evictOldest() }
    }

    /// A connection already open when the capture started: followed only if the client's first bytes are a TLS
    /// handshake record.
    private func adoptOpen(
        _ s: TCPSegment, key: Key, packetNumber: Int, at micros: Int64, _ packet: UnsafeRawBufferPointer
    ) -> Connection? {
        guard s.payloadLength >= 6, !s.rst, packet[s.payloadOffset] == 0x16, packet[s.payloadOffset + 1] == 3,
            packet[s.payloadOffset + 5] == 1
        else { return nil }
        let c = Connection(client: s.source, server: s.destination, packet: packetNumber, at: micros)
        c.streams[0].nextSeq = s.seq
        connections[key] = c
        if connections.count > limits.maxConnections { evictOldest() }
        return c
    }

    /// A RST before the handshake completed: refused, unanswered, or reset mid-handshake.
    private func reset(_ c: Connection, fromClient: Bool, at micros: Int64) {
        let side = fromClient ? "client" : "server"
        if !fromClient && c.synAckAt == nil && !c.streams[0].sentAny {
            record(
                c, .refused, side: "server", at: micros,
                detail: "the server answered the SYN with a RST: nothing listens on \(c.server.port)")
        } else if c.clientHello != nil && !c.streams[1].sentAny && fromClient {
            noServerHello(c, at: micros, detail: "the client reset the connection after its ClientHello got no answer")
        } else {
            record(
                c, .resetDuringHandshake, side: side, at: micros, detail: "the \(side) reset the connection \(stage(c))"
            )
        }
    }

    /// A FIN before the handshake completed.
    private func closed(_ c: Connection, fromClient: Bool, at micros: Int64) {
        let side = fromClient ? "client" : "server"
        if c.clientHello != nil && !c.streams[1].sentAny && fromClient {
            noServerHello(c, at: micros, detail: "the client closed after its ClientHello got no answer")
        } else {
            record(
                c, .closedDuringHandshake, side: side, at: micros,
                detail: "the \(side) closed the connection \(stage(c))")
        }
    }

    /// End of the capture: every open attempt gets its record.
    public func finishAll(at micros: Int64) {
        for (_, c) in connections where !c.done { finish(c, at: micros, reason: .endOfCapture) }
        connections.removeAll()
    }

    enum EndReason { case endOfCapture, idle, closed }

    func finish(_ c: Connection, at micros: Int64, reason: EndReason) {
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

    func noServerHello(_ c: Connection, at micros: Int64, detail: String) {
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

    func stage(_ c: Connection) -> String {
        if c.serverHello != nil { return "after the ServerHello" + (c.certificate != nil ? " and certificate" : "") }
        if c.clientHello != nil { return "after the ClientHello" }
        return "before the ClientHello"
    }

    func sweep(now: Int64) {
        var stale: [Key] = []
        for (k, c) in connections where now - c.lastMicros > limits.idleMicros { stale.append(k) }
        for k in stale {
            if let c = connections[k], !c.done { finish(c, at: now, reason: .idle) }
            connections[k] = nil
            evicted += 1
        }
    }

    func evictOldest() {
        guard let (k, c) = connections.min(by: { $0.value.lastMicros < $1.value.lastMicros }) else { return }
        if !c.done { finish(c, at: c.lastMicros, reason: .idle) }
        connections[k] = nil
        evicted += 1
    }

    func record(
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
