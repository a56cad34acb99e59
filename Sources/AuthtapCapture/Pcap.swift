import AuthtapDissector
import AuthtapModel
import CPcap
import Foundation

/// What went wrong opening or reading a capture, in one line.
public struct CaptureError: Error, CustomStringConvertible {
    public var description: String
    /// Raised when the process may not capture (exit status 2, with what is needed).
    public var isPermission: Bool
}

/// One packet as libpcap hands it over.
public struct RawPacket {
    public var number: Int
    public var micros: Int64
    public var bytes: UnsafeRawBufferPointer
}

/// A pcap or pcapng file (libpcap reads both).
public final class PcapFile {
    private let handle: OpaquePointer
    public let linkType: Int32
    public let path: String

    public init(path: String) throws {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard FileManager.default.fileExists(atPath: path) else {
            throw CaptureError(description: "\(path): no such file", isPermission: false)
        }
        guard let h = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_MICRO), &errbuf) else {
            throw CaptureError(
                description: "\(path): not a pcap or pcapng file (\(String(cString: errbuf)))", isPermission: false)
        }
        self.handle = h
        self.linkType = pcap_datalink(h)
        self.path = path
    }

    deinit { pcap_close(handle) }

    /// Reads every packet; returns the count, and an error text when the file ends badly (truncated).
    /// Classic pcap files are read in large chunks by authtap itself; pcapng goes through libpcap.
    public func forEach(_ body: (RawPacket) -> Void) -> (packets: Int, error: String?) {
        if let chunked = ChunkedPcap(path: path) { return chunked.forEach(body) }
        return libpcapForEach(body)
    }

    private func libpcapForEach(_ body: (RawPacket) -> Void) -> (packets: Int, error: String?) {
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        var n = 0
        while true {
            let rc = pcap_next_ex(handle, &header, &data)
            if rc == 1, let header, let data {
                n += 1
                body(
                    RawPacket(
                        number: n, micros: authtap_pcap_ts_usec(header),
                        bytes: UnsafeRawBufferPointer(start: data, count: Int(authtap_pcap_caplen(header)))))
            } else if rc == PCAP_ERROR_BREAK {
                return (n, nil)
            } else {
                let text = String(cString: pcap_geterr(handle))
                return (n, "\(path): \(text.isEmpty ? "read error" : text) after packet \(n)")
            }
        }
    }
}

/// A classic (not pcapng) pcap file, read in large chunks into one reused buffer: one copy per
/// byte, flat memory whatever the file size. Either byte order; micro- or nanosecond stamps.
struct ChunkedPcap {
    let fd: Int32
    let swapped: Bool
    let nanos: Bool
    let path: String
    static let chunk = 8 << 20

    init?(path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var header = [UInt8](repeating: 0, count: 24)
        guard read(fd, &header, 24) == 24 else { close(fd); return nil }
        let magic = UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24
        switch magic {
        case 0xA1B2_C3D4: (swapped, nanos) = (false, false)
        case 0xD4C3_B2A1: (swapped, nanos) = (true, false)
        case 0xA1B2_3C4D: (swapped, nanos) = (false, true)
        case 0x4D3C_B2A1: (swapped, nanos) = (true, true)
        default:
            close(fd)
            return nil
        }
        posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_SEQUENTIAL))
        self.fd = fd
        self.path = path
    }

    func forEach(_ body: (RawPacket) -> Void) -> (packets: Int, error: String?) {
        defer { close(fd) }
        let capacity = Self.chunk + 262_144 * 4 + 16
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
        defer { buffer.deallocate() }
        var filled = 0
        var n = 0
        var eof = false
        func u32(_ o: Int) -> UInt32 {
            let v = buffer.loadUnaligned(fromByteOffset: o, as: UInt32.self)
            return swapped ? v.byteSwapped : v
        }
        while true {
            // Refill: keep the unread tail, append the next chunk.
            if !eof {
                let got = read(fd, buffer.baseAddress! + filled, min(Self.chunk, capacity - filled))
                if got <= 0 { eof = true } else { filled += got }
            }
            var offset = 0
            while filled - offset >= 16 {
                let caplen = Int(u32(offset + 8))
                guard caplen <= 262_144 * 4 else {
                    return (n, "\(path): packet \(n + 1) claims \(caplen) bytes: the file is corrupt after packet \(n)")
                }
                guard filled - offset >= 16 + caplen else { break }
                let seconds = Int64(u32(offset)), fraction = Int64(u32(offset + 4))
                n += 1
                body(
                    RawPacket(
                        number: n, micros: seconds * 1_000_000 + (nanos ? fraction / 1000 : fraction),
                        bytes: UnsafeRawBufferPointer(start: buffer.baseAddress! + offset + 16, count: caplen)))
                offset += 16 + caplen
            }
            if offset > 0 {
                let rest = filled - offset
                if rest > 0 {
                    (buffer.baseAddress! + 0).copyMemory(from: buffer.baseAddress! + offset, byteCount: rest)
                }
                filled = rest
            }
            if eof {
                if filled > 0 { return (n, "\(path): truncated dump file; packet \(n + 1) is cut after packet \(n)") }
                return (n, nil)
            }
        }
    }
}

/// Live capture: the blocking pcap loop runs on its own thread and hands packets to a bounded
/// queue; a second thread consumes them. Drops are counted: libpcap's (kernel) and ours (queue full).
public final class LiveCapture: @unchecked Sendable {
    private let handle: OpaquePointer
    private var dumper: OpaquePointer?
    public let linkType: Int32
    public let interface: String
    private let lock = NSLock()
    private let ready = DispatchSemaphore(value: 0)
    private var queue: [(Int, Int64, [UInt8])] = []
    private var queueBytes = 0
    private let maxQueue = 65_536
    private let maxQueueBytes = 64 << 20
    private var stopped = false
    private var captureDone = false
    private var redaction = DumpRedaction()
    public private(set) var queueDrops = 0
    public private(set) var packets = 0

    public init(interface: String, filter: String, snaplen: Int32 = 65_535, write: String? = nil) throws {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let h = pcap_create(interface, &errbuf) else {
            throw CaptureError(description: "cannot open \(interface): \(String(cString: errbuf))", isPermission: false)
        }
        pcap_set_snaplen(h, snaplen)
        pcap_set_promisc(h, 0)
        pcap_set_timeout(h, 100)
        pcap_set_immediate_mode(h, 1)
        pcap_set_buffer_size(h, 16 << 20)
        let rc = pcap_activate(h)
        if rc == PCAP_ERROR_PERM_DENIED || rc == PCAP_ERROR_PROMISC_PERM_DENIED {
            pcap_close(h)
            throw CaptureError(
                description:
                    "authtap may not capture on \(interface): it needs root or CAP_NET_RAW; run it as root, or grant the capability once: sudo setcap cap_net_raw,cap_net_admin=eip \(CommandLine.arguments[0])",
                isPermission: true)
        }
        if rc == PCAP_ERROR_NO_SUCH_DEVICE {
            pcap_close(h)
            throw CaptureError(description: "no such interface: \(interface) (see `ip link`)", isPermission: false)
        }
        if rc < 0 {
            let text = String(cString: pcap_geterr(h))
            pcap_close(h)
            let permission = text.contains("ermission") || text.contains("not permitted")
            throw CaptureError(
                description: permission
                    ? "authtap may not capture on \(interface) (\(text)): it needs root or CAP_NET_RAW; run it as root, or grant the capability once: sudo setcap cap_net_raw,cap_net_admin=eip \(CommandLine.arguments[0])"
                    : "cannot capture on \(interface): \(text)", isPermission: permission)
        }
        var program = bpf_program()
        if pcap_compile(h, &program, filter, 1, PCAP_NETMASK_UNKNOWN) != 0 {
            let text = String(cString: pcap_geterr(h))
            pcap_close(h)
            throw CaptureError(description: "bad filter \"\(filter)\": \(text)", isPermission: false)
        }
        pcap_setfilter(h, &program)
        pcap_freecode(&program)
        if let write {
            do { dumper = try Self.openDump(h, path: write) } catch {
                pcap_close(h)
                throw error
            }
        }
        self.handle = h
        self.linkType = pcap_datalink(h)
        self.interface = interface
    }

    /// The dump file is the session's traffic: created 0600 (an existing one is truncated and tightened),
    /// since pcap_dump_open would create it with whatever umask the caller has.
    private static func openDump(_ h: OpaquePointer, path: String) throws -> OpaquePointer {
        func failure(_ why: String) -> CaptureError {
            CaptureError(description: "cannot write \(path): \(why)", isPermission: false)
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure(String(cString: strerror(errno))) }
        fchmod(fd, 0o600)
        guard let file = fdopen(fd, "wb") else {
            close(fd)
            throw failure(String(cString: strerror(errno)))
        }
        guard let dumper = pcap_dump_fopen(h, file) else {
            fclose(file)
            throw failure(String(cString: pcap_geterr(h)))
        }
        return dumper
    }

    /// Cuts the TCP payload of these ports out of the written file (the proxy's listen port); the
    /// dissector still sees whole packets. See `DumpRedaction`.
    public func redactPayload(onPorts ports: Set<Int>) {
        let valid = Set(ports.compactMap { UInt16(exactly: $0) })
        lock.lock(); redaction.ports = valid; lock.unlock()
    }

    /// Replaces the BPF filter (e.g. once the proxy knows the port it bound).
    public func setFilter(_ filter: String) throws {
        var program = bpf_program()
        guard pcap_compile(handle, &program, filter, 1, PCAP_NETMASK_UNKNOWN) == 0 else {
            throw CaptureError(
                description: "bad filter \"\(filter)\": \(String(cString: pcap_geterr(handle)))", isPermission: false)
        }
        defer { pcap_freecode(&program) }
        guard pcap_setfilter(handle, &program) == 0 else {
            throw CaptureError(
                description: "cannot set filter \"\(filter)\": \(String(cString: pcap_geterr(handle)))",
                isPermission: false)
        }
    }

    deinit {
        if let dumper { pcap_dump_close(dumper) }
        pcap_close(handle)
    }

    /// Starts the capture thread; `consume` runs on a second thread for every packet, in order.
    public func start(consume: @escaping @Sendable (RawPacket) -> Void, finished: @escaping @Sendable () -> Void) {
        let capture = Thread { [self] in self.captureLoop() }
        capture.name = "authtap-pcap"
        capture.start()
        let consumer = Thread { [self] in
            while true {
                ready.wait()
                lock.lock()
                let batch = queue
                queue.removeAll(keepingCapacity: true)
                queueBytes = 0
                let done = captureDone
                lock.unlock()
                for (n, t, bytes) in batch {
                    bytes.withUnsafeBytes { consume(RawPacket(number: n, micros: t, bytes: $0)) }
                }
                if done && batch.isEmpty { break }
                if done {
                    lock.lock(); let empty = queue.isEmpty; lock.unlock()
                    if empty { break }
                }
            }
            finished()
        }
        consumer.name = "authtap-dissect"
        consumer.start()
    }

    /// Starts capturing and dissecting: every finished handshake attempt goes to `emit` (on the
    /// dissector thread); `finished` runs once the capture has stopped and every open attempt got its record.
    public func startDissecting(
        emit: @escaping @Sendable (HandshakeRecord) -> Void, finished: @escaping @Sendable () -> Void
    ) {
        let dissector = Dissector(linkType: linkType, emit: emit)
        start(
            consume: { dissector.feed($0) },
            finished: {
                dissector.finish()
                finished()
            })
    }

    /// The tracker and the last timestamp, used by the dissector thread alone.
    private final class Dissector: @unchecked Sendable {
        let linkType: Int32
        let tracker: HandshakeTracker
        var last: Int64 = 0
        init(linkType: Int32, emit: @escaping @Sendable (HandshakeRecord) -> Void) {
            self.linkType = linkType
            self.tracker = HandshakeTracker(emit: emit)
        }
        func feed(_ packet: RawPacket) {
            last = packet.micros
            guard let segment = PacketDecoder.tcp(packet.bytes, linkType: linkType) else { return }
            tracker.feed(packetNumber: packet.number, micros: packet.micros, segment: segment, packet: packet.bytes)
        }
        func finish() { tracker.finishAll(at: last) }
    }

    private func captureLoop() {
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        while true {
            lock.lock(); let stop = stopped; let redaction = self.redaction; lock.unlock()
            if stop { break }
            let rc = pcap_next_ex(handle, &header, &data)
            if rc == 1, let header, let data {
                let len = Int(authtap_pcap_caplen(header))
                if let dumper {
                    let keep = redaction.captureLength(.init(start: data, count: len), linkType: linkType)
                    dump(dumper, header, data, keep: keep)
                }
                let bytes = Array(UnsafeBufferPointer(start: data, count: len))
                lock.lock()
                packets += 1
                if queue.count < maxQueue && queueBytes + len < maxQueueBytes {
                    queue.append((packets, authtap_pcap_ts_usec(header), bytes))
                    queueBytes += len
                    lock.unlock()
                    ready.signal()
                } else {
                    queueDrops += 1
                    lock.unlock()
                }
            } else if rc == 0 {
                continue  // timeout: look at the stop flag
            } else {
                break
            }
        }
        if let dumper { pcap_dump_flush(dumper) }
        lock.lock(); captureDone = true; lock.unlock()
        ready.signal()
    }

    /// Writes the packet, or its first `keep` bytes with the original length kept in the record header.
    private func dump(
        _ dumper: OpaquePointer, _ header: UnsafePointer<pcap_pkthdr>, _ data: UnsafePointer<UInt8>,
        keep: Int
    ) {
        let user = UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self)
        guard keep < Int(authtap_pcap_caplen(header)) else { return pcap_dump(user, header, data) }
        var cut = header.pointee
        cut.caplen = UInt32(keep)
        pcap_dump(user, &cut, data)
    }

    public func stop() {
        lock.lock(); stopped = true; lock.unlock()
        pcap_breakloop(handle)
    }

    /// libpcap's counters: packets received and dropped by the kernel or the interface.
    public var kernelStats: (received: Int, dropped: Int) {
        var stats = pcap_stat()
        guard pcap_stats(handle, &stats) == 0 else { return (0, 0) }
        return (Int(stats.ps_recv), Int(stats.ps_drop) + Int(stats.ps_ifdrop))
    }
}

/// Offline dissection of a whole file into handshake records.
public enum OfflineDissection {
    public struct Result {
        public var records: [HandshakeRecord]
        public var packets: Int
        public var tcpPackets: Int
        public var error: String?
    }

    /// - Parameter store: called with batches of records while the file is still being read
    ///   (on a serial background queue), so storing overlaps dissection.
    public static func run(path: String, store: (@Sendable ([HandshakeRecord]) -> Void)? = nil) throws -> Result {
        let file = try PcapFile(path: path)
        guard PacketDecoder.LinkType(rawValue: file.linkType) != nil else {
            throw CaptureError(
                description:
                    "\(path): link type \(file.linkType) is not supported (Ethernet, Linux cooked v1/v2, BSD loopback/NULL and raw IP are)",
                isPermission: false)
        }
        var records: [HandshakeRecord] = []
        var pending: [HandshakeRecord] = []
        let storeQueue = DispatchQueue(label: "authtap.offline-store")
        let tracker = HandshakeTracker { r in
            records.append(r)
            guard let store else { return }
            pending.append(r)
            if pending.count >= 2048 {
                let batch = pending
                pending.removeAll(keepingCapacity: true)
                storeQueue.async { store(batch) }
            }
        }
        var tcp = 0
        var last: Int64 = 0
        let (count, error) = file.forEach { packet in
            last = packet.micros
            guard let segment = PacketDecoder.tcp(packet.bytes, linkType: file.linkType) else { return }
            tcp += 1
            tracker.feed(packetNumber: packet.number, micros: packet.micros, segment: segment, packet: packet.bytes)
        }
        tracker.finishAll(at: last)
        if let store {
            let batch = pending
            storeQueue.async { store(batch) }
            storeQueue.sync {}
        }
        return Result(
            records: records.sorted { ($0.firstPacket, $0.startMicros) < ($1.firstPacket, $1.startMicros) },
            packets: count, tcpPackets: tcp, error: error)
    }
}
