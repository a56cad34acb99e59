import AuthtapCA
import Foundation

/// The lines that point common clients at authtap: `authtap env` prints them, and so does the proxy's banner.
func clientSetupLines(proxyURL: String, certs: CertsDirectory, export: Bool) -> [String] {
    let ca = absolute(certs.caCertificatePath)
    let bundle = absolute(certs.bundlePath)
    let p = export ? "export " : "  export "
    return [
        "\(p)HTTPS_PROXY=\(proxyURL) HTTP_PROXY=\(proxyURL) https_proxy=\(proxyURL) http_proxy=\(proxyURL)",
        "\(p)SSL_CERT_FILE=\(bundle) REQUESTS_CA_BUNDLE=\(bundle) CURL_CA_BUNDLE=\(bundle)",
        "\(p)NODE_EXTRA_CA_CERTS=\(ca)",
        (export ? "# " : "  # ")
            + "Java: keytool -importcert -noprompt -alias authtap -file \(ca) "
            + "-keystore \"$JAVA_HOME/lib/security/cacerts\" -storepass changeit"
            + " && java -Dhttps.proxyHost=\(proxyHost(proxyURL)) -Dhttps.proxyPort=\(proxyPort(proxyURL)) ...",
    ]
}

func proxyHost(_ url: String) -> String {
    let rest = url.replacingOccurrences(of: "http://", with: "")
    return String(rest[..<(rest.lastIndex(of: ":") ?? rest.endIndex)])
}

/// What follows the URL's last colon; `proxyURL(host:port:)` always writes one.
func proxyPort(_ url: String) -> String {
    guard let colon = url.lastIndex(of: ":") else { return "" }
    return String(url[url.index(after: colon)...])
}

func proxyURL(host: String, port: Int) -> String {
    let shown = host == "0.0.0.0" ? "127.0.0.1" : host
    return "http://\(shown.contains(":") ? "[\(shown)]" : shown):\(port)"
}
