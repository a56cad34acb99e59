// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "authtap",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "authtap", targets: ["authtap"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // Pure, at the bottom: the Sendable values modules share, and the ExchangeSink the proxy records into.
        .target(name: "AuthtapModel"),
        // zlib, brotli and zstd decoders, as GRDB wraps SQLite: a module map and a shim header each.
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CBrotli", providers: [.apt(["libbrotli-dev"])]),
        .systemLibrary(name: "CZstd", providers: [.apt(["libzstd-dev"])]),
        // Pure: body decoding (Content-Encoding / Transfer-Encoding codings, charsets to UTF-8), bounded.
        .target(name: "AuthtapCodec", dependencies: ["CZlib", "CBrotli", "CZstd"]),
        // Pure: OAuth recognition, masking, fingerprints, JWT decoding. Never imports NIO.
        .target(
            name: "AuthtapOAuth",
            dependencies: [
                "AuthtapModel", "AuthtapCodec",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // Pure: rebuilds OAuth transactions and classifies failures (rules, provider dialects). Never imports NIO.
        .target(name: "AuthtapAnalyzer", dependencies: ["AuthtapModel", "AuthtapOAuth"]),
        // Pure: TLS records and handshakes (ClientHello, ServerHello, alerts) -> handshake records.
        .target(
            name: "AuthtapDissector",
            dependencies: [
                "AuthtapModel",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // libpcap, as GRDB wraps SQLite: a module map and a shim header.
        .systemLibrary(name: "CPcap", providers: [.apt(["libpcap-dev"])]),
        // The thin libpcap-facing layer: offline files, live capture on its own thread, dumps.
        .target(name: "AuthtapCapture", dependencies: ["CPcap", "AuthtapDissector", "AuthtapModel"]),
        // Pure: HAR 1.2 export and import (the analyzer lends its JSON reader).
        .target(name: "AuthtapHAR", dependencies: ["AuthtapModel", "AuthtapAnalyzer"]),
        // ncursesw, the same way: a module map and static inline shims for its macros and globals.
        .systemLibrary(name: "CNCurses", providers: [.apt(["libncurses-dev"])]),
        // prctl and an async-signal-safe crash handler, which Swift cannot express: static inline C in a header.
        .systemLibrary(name: "CSysGuard"),
        // The terminal UI's views, keys and filters, drawing into a plain screen buffer (testable without a terminal).
        .target(
            name: "AuthtapTUI",
            dependencies: ["AuthtapStore", "AuthtapModel", "AuthtapOAuth", "AuthtapAnalyzer", "AuthtapHAR"]
        ),
        // Certificate authority, leaf issuance and cache, NIOSSL bridge.
        .target(
            name: "AuthtapCA",
            dependencies: [
                "AuthtapModel",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // SQLite capture store: migrations, records, the batching writer (the proxy's sink). Model values only.
        .target(
            name: "AuthtapStore",
            dependencies: [
                "AuthtapModel",
                .product(name: "GRDB", package: "GRDB.swift"),
                // GRDB's own SQLite module: the exchange insert binds its values in place (see insert(exchanges:)).
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ]
        ),
        // The NIO proxy: listener, CONNECT, MITM, tunnel, upstream pool; hands records to an ExchangeSink.
        .target(
            name: "AuthtapProxy",
            dependencies: [
                "AuthtapModel", "AuthtapDissector", "AuthtapCA", "AuthtapCodec",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        // The command line: parses arguments and wires the modules together (the store's writer into the proxy).
        .executableTarget(
            name: "authtap",
            dependencies: [
                "AuthtapModel", "AuthtapOAuth", "AuthtapAnalyzer", "AuthtapCA", "AuthtapStore", "AuthtapProxy",
                "AuthtapCapture", "AuthtapDissector", "AuthtapTUI", "CNCurses", "CSysGuard", "AuthtapHAR",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        // Benchmark tools kept out of the product binary: `generate` (a synthetic capture) and `record`.
        .executableTarget(
            name: "authtap-bench",
            dependencies: [
                "AuthtapModel", "AuthtapOAuth", "AuthtapCA", "AuthtapStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "AuthtapOAuthTests",
            dependencies: [
                "AuthtapOAuth", "AuthtapModel", "CZlib", "CZstd",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .testTarget(name: "AuthtapModelTests", dependencies: ["AuthtapModel"]),
        .testTarget(name: "AuthtapHARTests", dependencies: ["AuthtapHAR", "AuthtapModel"]),
        .testTarget(name: "AuthtapCodecTests", dependencies: ["AuthtapCodec"]),
        .testTarget(name: "AuthtapAnalyzerTests", dependencies: ["AuthtapAnalyzer", "AuthtapOAuth", "AuthtapModel"]),
        .testTarget(
            name: "AuthtapTUITests", dependencies: ["AuthtapTUI", "AuthtapStore", "AuthtapModel", "AuthtapAnalyzer"]
        ),
        .testTarget(name: "AuthtapDissectorTests", dependencies: ["AuthtapDissector", "AuthtapModel"]),
        .testTarget(name: "AuthtapStoreTests", dependencies: ["AuthtapStore", "AuthtapModel", "AuthtapDissector"]),
        .testTarget(
            name: "AuthtapProxyTests",
            dependencies: [
                "AuthtapProxy", "AuthtapModel", "AuthtapCA",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "AuthtapCATests",
            dependencies: [
                "AuthtapCA",
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets (Tests/fuzz, run by scripts/fuzz), declared only when AUTHTAP_FUZZ is set so that ordinary
// builds neither see nor compile them: they link libFuzzer's driver, which `-sanitize=fuzzer` brings.
if Context.environment["AUTHTAP_FUZZ"] != nil {
    let fuzz: [(name: String, dependencies: [Target.Dependency])] = [
        ("FuzzMasker", ["AuthtapOAuth", "AuthtapModel"]),
        ("FuzzBodyDecoder", ["AuthtapCodec"]),
        ("FuzzJSON", ["AuthtapAnalyzer", "AuthtapOAuth", "AuthtapModel"]),
        ("FuzzAnalyzer", ["AuthtapAnalyzer", "AuthtapOAuth", "AuthtapModel", "AuthtapDissector"]),
        ("FuzzHAR", ["AuthtapHAR", "AuthtapAnalyzer", "AuthtapOAuth", "AuthtapModel"]),
        ("FuzzPcap", ["AuthtapCapture", "AuthtapDissector"]),
        ("FuzzFilter", ["AuthtapTUI"]),
        (
            "FuzzProxyFront",
            [
                "AuthtapProxy", "AuthtapCA", "AuthtapStore", "AuthtapModel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ]
    package.targets += [.target(name: "FuzzSupport", path: "Tests/fuzz/Support")]
    package.targets += fuzz.map { target in
        .executableTarget(
            name: target.name, dependencies: target.dependencies + ["FuzzSupport"],
            path: "Tests/fuzz/Targets/\(target.name)",
            // The harnesses are single-threaded (libFuzzer calls them in turn) and keep their fixtures in globals.
            swiftSettings: [.unsafeFlags(["-parse-as-library"]), .swiftLanguageMode(.v5)]
        )
    }
}
