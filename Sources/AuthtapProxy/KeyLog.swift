import Foundation
import NIOCore
import NIOSSL

/// Appends NSS key-log lines (`CLIENT_RANDOM …`, TLS 1.3 traffic secrets) to a file created 0600.
/// Anyone holding the file can decrypt the captured traffic of both legs.
public final class KeyLogFile: Sendable {
    private let fd: Int32

    public init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw KeyLogError(message: "cannot open key log \(path): \(String(cString: strerror(errno)))")
        }
        fchmod(fd, 0o600)
        self.fd = fd
    }

    deinit { close(fd) }

    /// The callback for `TLSConfiguration.keyLogCallback` (NIOSSL hands over whole lines, newline
    /// included). Each line is one `write(2)` on an O_APPEND descriptor, so lines from different
    /// event loops never interleave.
    public var callback: NIOSSLKeyLogCallback {
        { [fd] buffer in
            buffer.withUnsafeReadableBytes { _ = write(fd, $0.baseAddress, $0.count) }
        }
    }
}

public struct KeyLogError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
