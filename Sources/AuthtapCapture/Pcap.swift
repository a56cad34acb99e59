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
