import AuthtapModel
import Testing

@testable import AuthtapDissector

// MARK: packet builders

func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

struct Flow {
    var client: [UInt8] = [10, 0, 0, 1]
    var server: [UInt8] = [10, 0, 0, 2]
    var clientPort = 40000
    var serverPort = 443
    var v6 = false

    func tcp(fromClient: Bool, flags: UInt8, seq: UInt32, ack: UInt32 = 0, payload: [UInt8] = []) -> [UInt8] {
        let (sp, dp) = fromClient ? (clientPort, serverPort) : (serverPort, clientPort)
        return be16(sp) + be16(dp) + be32(seq) + be32(ack) + [0x50, flags] + be16(65535) + [0, 0, 0, 0] + payload
    }

    func ip(fromClient: Bool, _ segment: [UInt8]) -> [UInt8] {
        let (s, d) = fromClient ? (client, server) : (server, client)
        if v6 {
            let src = [UInt8](repeating: 0, count: 15) + [s[3]], dst = [UInt8](repeating: 0, count: 15) + [d[3]]
            // A hop-by-hop options header before TCP.
            let hop: [UInt8] = [6, 0, 1, 4, 0, 0, 0, 0]
            return [0x60, 0, 0, 0] + be16(segment.count + hop.count) + [0, 64] + src + dst + hop + segment
        }
        return [0x45, 0] + be16(20 + segment.count) + [0, 1, 0x40, 0, 64, 6, 0, 0] + s + d + segment
    }

    func ethernet(fromClient: Bool, _ segment: [UInt8], vlan: Bool = false) -> [UInt8] {
        let type = v6 ? 0x86DD : 0x0800
        return [UInt8](repeating: 2, count: 12) + (vlan ? be16(0x8100) + be16(5) : []) + be16(type)
            + ip(fromClient: fromClient, segment)
    }
}

final class Collector {
    var records: [HandshakeRecord] = []
    lazy var tracker = HandshakeTracker { [unowned self] in self.records.append($0) }
    var number = 0

    func feed(_ bytes: [UInt8], link: PacketDecoder.LinkType = .ethernet, at micros: Int64) {
        number += 1
        bytes.withUnsafeBytes { p in
            if let s = PacketDecoder.tcp(p, linkType: link.rawValue) {
                tracker.feed(packetNumber: number, micros: micros, segment: s, packet: p)
            }
        }
    }
}

// MARK: link layers

struct LinkCase: Sendable, CustomStringConvertible {
    var description: String
    var link: PacketDecoder.LinkType
    var v6: Bool
    var wrap: @Sendable ([UInt8]) -> [UInt8]
}

let linkCases: [LinkCase] = [
    .init(
        description: "ethernet", link: .ethernet, v6: false,
        wrap: { [UInt8](repeating: 2, count: 12) + be16(0x0800) + $0 }),
    .init(
        description: "ethernet + VLAN", link: .ethernet, v6: false,
        wrap: { [UInt8](repeating: 2, count: 12) + be16(0x8100) + be16(7) + be16(0x0800) + $0 }),
    .init(
        description: "linux cooked v1", link: .linuxSLL, v6: false,
        wrap: { [0, 0, 0, 1, 0, 6] + [UInt8](repeating: 0, count: 8) + be16(0x0800) + $0 }),
    .init(
        description: "linux cooked v2", link: .linuxSLL2, v6: true,
        wrap: { be16(0x86DD) + [0, 0] + [0, 0, 0, 1] + [0, 1, 0, 6] + [UInt8](repeating: 0, count: 8) + $0 }),
    .init(description: "BSD null", link: .null, v6: false, wrap: { [2, 0, 0, 0] + $0 }),
    .init(description: "BSD null ipv6", link: .null, v6: true, wrap: { [30, 0, 0, 0] + $0 }),
    .init(description: "OpenBSD loop", link: .loop, v6: false, wrap: { [0, 0, 0, 2] + $0 }),
    .init(description: "raw ipv4", link: .raw, v6: false, wrap: { $0 }),
    .init(description: "raw ipv6", link: .raw, v6: true, wrap: { $0 }),
]

@Test(arguments: linkCases)
func linkLayersDecodeToTheSegment(_ c: LinkCase) throws {
    let flow = Flow(v6: c.v6)
    let packet = c.wrap(
        flow.ip(fromClient: true, flow.tcp(fromClient: true, flags: 0x18, seq: 100, payload: [1, 2, 3])))
    let s = try #require(packet.withUnsafeBytes { PacketDecoder.tcp($0, linkType: c.link.rawValue) })
    #expect(s.source.port == 40000 && s.destination.port == 443 && s.seq == 100)
    #expect(s.payloadLength == 3)
    #expect(s.source.address == (c.v6 ? "::1" : "10.0.0.1"))
}

@Test func garbageAndCutPacketsDecodeToNothing() {
    let flow = Flow()
    let good = flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1))
    for n in 0..<good.count {
        // Every prefix: never a crash; a segment only once the TCP header is complete.
        let s = Array(good.prefix(n)).withUnsafeBytes { PacketDecoder.tcp($0, linkType: 1) }
        #expect(s == nil || n >= 14 + 20 + 20)
    }
    let garbage: [UInt8] = [0xFF, 0x00, 0x45, 0x00, 0x12]
    #expect(garbage.withUnsafeBytes { PacketDecoder.tcp($0, linkType: 1) } == nil)
    #expect(good.withUnsafeBytes { PacketDecoder.tcp($0, linkType: 999) } == nil)
}

// MARK: tracker

func handshake(
    _ c: Collector, flow: Flow = Flow(), clientHelloParts: [Range<Int>]? = nil, order: [Int]? = nil,
    serverAnswers: Bool = true
) {
    c.feed(flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1000)), at: 0)
    c.feed(flow.ethernet(fromClient: false, flow.tcp(fromClient: false, flags: 0x12, seq: 5000, ack: 1001)), at: 100)
    let hello = clientHello(sni: "split.example")
    let parts = clientHelloParts ?? [0..<hello.count]
    for i in order ?? Array(parts.indices) {
        let r = parts[i]
        c.feed(
            flow.ethernet(
                fromClient: true,
                flow.tcp(fromClient: true, flags: 0x18, seq: 1001 + UInt32(r.lowerBound), payload: Array(hello[r]))),
            at: 200 + Int64(i))
    }
    guard serverAnswers else { return }
    let sh = serverHello()
    c.feed(
        flow.ethernet(
            fromClient: false,
            flow.tcp(
                fromClient: false, flags: 0x18, seq: 5001,
                payload: sh + [20, 3, 3, 0, 1, 1] + [23, 3, 3, 0, 40] + [UInt8](repeating: 0xAA, count: 40))), at: 1000)
    c.feed(
        flow.ethernet(
            fromClient: true,
            flow.tcp(
                fromClient: true, flags: 0x18, seq: 1001 + UInt32(hello.count),
                payload: [20, 3, 3, 0, 1, 1] + [23, 3, 3, 0, 53] + [UInt8](repeating: 0xBB, count: 53))), at: 2000)
}

@Test func clientHelloSplitAcrossThreeSegmentsOutOfOrder() throws {
    let c = Collector()
    let n = clientHello(sni: "split.example").count
    handshake(c, clientHelloParts: [0..<3, 3..<40, 40..<n], order: [0, 2, 1])
    let r = try #require(c.records.first)
    #expect(r.outcome == .completed)
    #expect(r.sni == "split.example")
    #expect(r.alpnOffered == ["h2", "http/1.1"])
    #expect(r.serverVersion == "TLSv1.3")
    #expect(r.durationMs == Double(2000 - 201) / 1000)  // from the segment that completed the ClientHello
    #expect(c.records.count == 1)
}

@Test func aMissingSegmentNeverCompletesTheHelloAndEndsAsNoServerHello() throws {
    let c = Collector()
    let n = clientHello().count
    handshake(c, clientHelloParts: [0..<3, 3..<40, 40..<n], order: [0, 2], serverAnswers: false)
    c.tracker.finishAll(at: 10_000_000)
    let r = try #require(c.records.first)
    // The client's bytes never formed a ClientHello: TCP connected, the handshake never started.
    #expect(r.outcome == .closedDuringHandshake)
    #expect(r.sni == nil)
}

@Test func retransmittedClientHelloWithoutAnswer() throws {
    let c = Collector()
    let flow = Flow()
    c.feed(flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1)), at: 0)
    c.feed(flow.ethernet(fromClient: false, flow.tcp(fromClient: false, flags: 0x12, seq: 9, ack: 2)), at: 10)
    let hello = clientHello(sni: "blocked.example")
    for t in [Int64(100), 300_000, 900_000] {
        c.feed(flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x18, seq: 2, payload: hello)), at: t)
    }
    c.feed(
        flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x04, seq: 2 + UInt32(hello.count))),
        at: 5_000_000)
    let r = try #require(c.records.first)
    #expect(r.outcome == .clientHelloRetransmitted)
    #expect(r.clientHelloRetransmits == 2)
    #expect(r.sni == "blocked.example")
}

@Test func synUnansweredRefusedAndIPv6() throws {
    let c = Collector()
    let a = Flow(clientPort: 1111)
    c.feed(a.ethernet(fromClient: true, a.tcp(fromClient: true, flags: 0x02, seq: 1)), at: 0)
    c.feed(a.ethernet(fromClient: true, a.tcp(fromClient: true, flags: 0x02, seq: 1)), at: 1_000_000)
    let b = Flow(clientPort: 2222, v6: true)
    c.feed(b.ethernet(fromClient: true, b.tcp(fromClient: true, flags: 0x02, seq: 1)), at: 0)
    c.feed(b.ethernet(fromClient: false, b.tcp(fromClient: false, flags: 0x14, seq: 0, ack: 2)), at: 50)
    c.tracker.finishAll(at: 3_000_000)
    let byPort = Dictionary(uniqueKeysWithValues: c.records.map { ($0.clientPort, $0) })
    #expect(byPort[1111]?.outcome == .synUnanswered)
    #expect(byPort[1111]?.detail.contains("1 SYN retransmissions") == true)
    #expect(byPort[2222]?.outcome == .refused)
    #expect(byPort[2222]?.client == "::1")
}

@Test func alertsAndVersionMismatch() throws {
    let c = Collector()
    let flow = Flow()
    c.feed(flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1)), at: 0)
    c.feed(flow.ethernet(fromClient: false, flow.tcp(fromClient: false, flags: 0x12, seq: 9, ack: 2)), at: 10)
    c.feed(
        flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x18, seq: 2, payload: clientHello())), at: 20
    )
    c.feed(
        flow.ethernet(
            fromClient: false, flow.tcp(fromClient: false, flags: 0x18, seq: 10, payload: [21, 3, 3, 0, 2, 2, 40])),
        at: 30)
    let r = try #require(c.records.first)
    #expect(r.outcome == .alert && r.side == "server" && r.alert == "handshake_failure")
    let v = Collector()
    v.feed(flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1)), at: 0)
    v.feed(
        flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x18, seq: 2, payload: clientHello())), at: 20
    )
    v.feed(
        flow.ethernet(
            fromClient: false, flow.tcp(fromClient: false, flags: 0x18, seq: 10, payload: [21, 3, 3, 0, 2, 2, 70])),
        at: 30)
    #expect(v.records.first?.outcome == .versionMismatch)
}

@Test func memoryStaysBoundedAndIdleConnectionsAreEvicted() {
    var limits = HandshakeTracker.Limits()
    limits.maxConnections = 100
    limits.idleMicros = 1_000_000
    var emitted = 0
    let tracker = HandshakeTracker(limits: limits) { _ in emitted += 1 }
    for i in 0..<10_000 {
        let flow = Flow(clientPort: 1024 + i % 60_000)
        let syn = flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1))
        syn.withUnsafeBytes { p in
            tracker.feed(
                packetNumber: i + 1, micros: Int64(i) * 1000, segment: PacketDecoder.tcp(p, linkType: 1)!, packet: p)
        }
        #expect(tracker.trackedConnections <= 101)
    }
    #expect(emitted >= 9_800)
    // A stream never holds more than its byte limit.
    let big = Collector()
    let flow = Flow()
    big.feed(flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1)), at: 0)
    big.feed(flow.ethernet(fromClient: false, flow.tcp(fromClient: false, flags: 0x12, seq: 9, ack: 2)), at: 0)
    var seq: UInt32 = 2
    let chunk = [22, 3, 3, 0xFF, 0xFF] + [UInt8](repeating: 1, count: 1400)
    for i in 0..<200 {
        big.feed(
            flow.ethernet(
                fromClient: true,
                flow.tcp(fromClient: true, flags: 0x18, seq: seq, payload: i == 0 ? chunk : Array(chunk[5...]))),
            at: Int64(i))
        seq &+= UInt32(i == 0 ? chunk.count : chunk.count - 5)
    }
    big.tracker.finishAll(at: 1_000_000)
    // 280 KB claimed by one record: buffering stops at the limit, the attempt still gets its record.
    #expect(big.records.map(\.outcome) == [.closedDuringHandshake])
}

@Test func randomizedMutationsNeverCrashOrHang() {
    // 100k mutated packets from a complete handshake: flipped bytes, cut lengths, shuffled order.
    var rng = SplitMix(seed: 42)
    let flow = Flow()
    let hello = clientHello()
    var base: [[UInt8]] = [
        flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1)),
        flow.ethernet(fromClient: false, flow.tcp(fromClient: false, flags: 0x12, seq: 9, ack: 2)),
        flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x18, seq: 2, payload: hello)),
        flow.ethernet(
            fromClient: false,
            flow.tcp(fromClient: false, flags: 0x18, seq: 10, payload: serverHello() + [21, 3, 3, 0, 2, 2, 40])),
    ]
    base.append(
        Flow(v6: true).ethernet(
            fromClient: true, Flow(v6: true).tcp(fromClient: true, flags: 0x18, seq: 2, payload: hello)))
    var emitted = 0
    let tracker = HandshakeTracker { _ in emitted += 1 }
    for i in 0..<100_000 {
        var p = base[Int(rng.next() % UInt64(base.count))]
        let mutations = Int(rng.next() % 4)
        for _ in 0..<mutations {
            switch rng.next() % 3 {
            case 0: p[Int(rng.next() % UInt64(p.count))] = UInt8(truncatingIfNeeded: rng.next())
            case 1: p = Array(p.prefix(Int(rng.next() % UInt64(p.count + 1))))
            default:
                if !p.isEmpty { p.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(p.count))) }
            }
            if p.isEmpty { p = [0] }
        }
        p.withUnsafeBytes { raw in
            for link: Int32 in [1, 113, 276, 0, 101] {
                if let s = PacketDecoder.tcp(raw, linkType: link) {
                    tracker.feed(packetNumber: i + 1, micros: Int64(i), segment: s, packet: raw)
                }
            }
        }
    }
    tracker.finishAll(at: 200_000)
    #expect(tracker.trackedConnections == 0)
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Test func anAlertUnderTheHandshakeKeysIsAnEncryptedAlert() throws {
    let c = Collector()
    let flow = Flow()
    c.feed(flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x02, seq: 1)), at: 0)
    c.feed(flow.ethernet(fromClient: false, flow.tcp(fromClient: false, flags: 0x12, seq: 9, ack: 2)), at: 10)
    let hello = clientHello()
    c.feed(flow.ethernet(fromClient: true, flow.tcp(fromClient: true, flags: 0x18, seq: 2, payload: hello)), at: 20)
    // TLS 1.2: ServerHello, then the client's ChangeCipherSpec and a 26-byte (encrypted) alert record.
    c.feed(
        flow.ethernet(
            fromClient: false,
            flow.tcp(fromClient: false, flags: 0x18, seq: 10, payload: serverHello(cipher: 0xC02F, tls13: false))),
        at: 30)
    c.feed(
        flow.ethernet(
            fromClient: true,
            flow.tcp(
                fromClient: true, flags: 0x18, seq: 2 + UInt32(hello.count),
                payload: [20, 3, 3, 0, 1, 1] + [21, 3, 3, 0, 26] + [UInt8](repeating: 0x5A, count: 26))), at: 40)
    let r = try #require(c.records.first)
    #expect(r.outcome == .alert && r.encryptedAlert && r.side == "client" && r.alert == "encrypted")
    #expect(r.serverVersion == "TLSv1.2")
}
