import AuthtapCapture
import AuthtapDissector
import Foundation
import FuzzSupport

/// `authtap capture --read FILE` without the store: the bytes are written to a file (libpcap reads pcapng from
/// a path, classic pcap is read by authtap's own chunked reader) and dissected into handshake records.
let path = "\(NSTemporaryDirectory())/authtap-fuzz-pcap-\(getpid()).pcap"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Plain open/write/close: FileManager.createFile writes atomically and fsyncs, which cost most of each run.
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0, size == 0 || write(fd, data, size) == size else { fatalError("cannot write \(path)") }
    close(fd)
    // The TLS record reader on its own too: the proxy's ClientHello gate reads tunnel bytes with it.
    _ = TLSDissector.parseFirstRecord(Array(UnsafeBufferPointer(start: data, count: size)))
    if let result = try? OfflineDissection.run(path: path) {
        for record in result.records { _ = record.summary }
    }
    return 0
}

@_cdecl("FuzzPcap_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}
