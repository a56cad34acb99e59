import AuthtapModel
import Foundation

/// Recognises the OAuth / OIDC role of an exchange from its shape (method, path suffix,
/// parameters, response members), never from provider host names.
public enum Recognizer {
    /// The facts the recognizer reads, all already masked.
    public struct Facts: Sendable {
        public var method: String
        public var path: String
        public var status: Int?
        public var params: [OAuthParam]
        public var requestHeaders: [HeaderField]
        public var responseHeaders: [HeaderField]

        public init(
            method: String, path: String, status: Int?, params: [OAuthParam], requestHeaders: [HeaderField],
            responseHeaders: [HeaderField]
        ) {
            self.method = method
            self.path = path
            self.status = status
            self.params = params
            self.requestHeaders = requestHeaders
            self.responseHeaders = responseHeaders
        }

        func has(_ name: String, in prefix: ParamLocation) -> Bool {
            for p in params where p.name == name && p.location.isWithin(prefix) { return true }
            return false
        }
        func hasInRequest(_ name: String) -> Bool {
            params.contains { $0.name == name && $0.location.isRequest }
        }
        func value(_ name: String, in prefix: ParamLocation) -> String? {
            params.first { $0.name == name && $0.location.isWithin(prefix) }?.value
        }
    }

    public static func roles(for f: Facts) -> [OAuthRole] {
        let shape = Shape(f)
        var roles = shape.metadataRoles()
        if let request = shape.authorizationRequestRole() { roles.append(request) }
        if shape.isAuthorizationResponse(after: roles) { roles.append(.authorizationResponse) }
        if shape.isCallback(after: roles) { roles.append(.callback) }
        if shape.isTokenRequest(after: roles) { roles.append(.token) }
        if shape.isDeviceAuthorization(after: roles) { roles.append(.deviceAuthorization) }
        if let management = shape.tokenManagementRole(after: roles) { roles.append(management) }
        if shape.isUserinfo(after: roles) { roles.append(.userinfo) }
        if isSignInStep(f, after: roles) { roles.append(.signInStep) }
        return roles
    }

    /// One exchange's facts with its path and method normalised, asked one role at a time, in the order
    /// `roles(for:)` asks (a later role may depend on an earlier one).
    private struct Shape {
        let f: Facts
        let path: String
        let method: String
        let requestQuery = ParamLocation.requestTargetQuery
        let requestBody = ParamLocation.requestBody
        let response = ParamLocation.responseBody
        let location = ParamLocation.responseLocation

        init(_ f: Facts) {
            self.f = f
            path = f.path.lowercased()
            method = f.method.uppercased()
        }

        /// Discovery and JWKS: well-known paths, or a JWKS-shaped response.
        func metadataRoles() -> [OAuthRole] {
            var roles: [OAuthRole] = []
            if path.hasSuffix("/.well-known/openid-configuration")
                || path.hasSuffix("/.well-known/oauth-authorization-server")
                || path.utf8Contains("/.well-known/openid-configuration/")
                || path.utf8Contains("/.well-known/oauth-authorization-server/")
            {
                roles.append(.discovery)
            }
            if method == "GET", f.value("keys", in: response) == "[…]" {
                let members = f.params.filter { $0.location == response }.count
                if path.utf8Contains("jwk") || path.hasSuffix("/certs") || path.hasSuffix("/keys") || members == 1 {
                    roles.append(.jwks)
                }
            }
            return roles
        }

        /// Authorization request: response_type + client_id in the query (or a form POST), or a request_uri
        /// from PAR; a PAR request itself is a POST of the same parameters answered with a request_uri.
        func authorizationRequestRole() -> OAuthRole? {
            let inQuery =
                (f.has("response_type", in: requestQuery) || f.has("request_uri", in: requestQuery))
                && f.has("client_id", in: requestQuery)
            let postedRequest =
                method == "POST" && f.has("response_type", in: requestBody) && f.has("client_id", in: requestBody)
            let isPAR =
                postedRequest
                && (f.has("request_uri", in: response) || path.hasSuffix("/par") || path.utf8Contains("pushed"))
            if isPAR { return .pushedAuthorizationRequest }
            if inQuery || (postedRequest && f.has("redirect_uri", in: requestBody)) { return .authorizationRequest }
            // GitHub's and Slack's authorize URLs carry no response_type: client_id and redirect_uri say it.
            if method == "GET", f.has("client_id", in: requestQuery), f.has("redirect_uri", in: requestQuery),
                !f.has("grant_type", in: requestQuery), !f.has("code", in: requestQuery)
            {
                return .authorizationRequest
            }
            return nil
        }

        /// Authorization response: a redirect whose Location carries code / error (+ state), query or fragment.
        func isAuthorizationResponse(after roles: [OAuthRole]) -> Bool {
            guard let status = f.status, (300..<400).contains(status) else { return false }
            let carriesCode =
                f.has("code", in: location) || f.has("access_token", in: location) || f.has("id_token", in: location)
            let carriesError =
                f.has("error", in: location)
                && (f.has("state", in: location) || f.has("error_description", in: location)
                    || roles.contains(.authorizationRequest))
            return carriesCode || carriesError
                || (f.has("state", in: location) && roles.contains(.authorizationRequest))
        }

        /// Callback: the client's redirect_uri hit with code/error and state (query, or form_post body). The
        /// fragment too: a browser's HAR shows the implicit flow's `#access_token=…&state=…`.
        func isCallback(after roles: [OAuthRole]) -> Bool {
            guard !roles.contains(.authorizationRequest), !f.has("grant_type", in: requestBody) else { return false }
            return [requestQuery, requestBody, .requestTargetFragment].contains { source in
                let hasCode = f.has("code", in: source)
                let hasError = f.has("error", in: source)
                let hasState = f.has("state", in: source)
                let hasIssuer = f.has("iss", in: source) || f.has("session_state", in: source)
                let hasToken = f.has("id_token", in: source) || f.has("access_token", in: source)
                // An error with its description and no state (Cognito), or an RFC code alone (Azure DevOps'
                // `error=InvalidScope`, Salesforce's `error=access-denied`).
                let described =
                    hasError
                    && (f.has("error_description", in: source)
                        || Self.callbackErrors.contains(Self.squeezed(f.value("error", in: source) ?? "")))
                return (hasCode && (hasState || hasIssuer)) || (hasError && hasState) || (hasToken && hasState)
                    || described
            }
        }

        /// RFC 6749 §4.1.2.1 and OIDC Core §3.1.2.6 authorization error codes, without case or punctuation.
        static let callbackErrors: Set<String> = [
            "invalidrequest", "unauthorizedclient", "accessdenied", "unsupportedresponsetype", "invalidscope",
            "servererror", "temporarilyunavailable", "interactionrequired", "loginrequired",
            "accountselectionrequired", "consentrequired", "invalidrequesturi", "invalidrequestobject",
            "requestnotsupported", "requesturinotsupported", "registrationnotsupported",
        ]

        static func squeezed(_ code: String) -> String {
            String(String.UnicodeScalarView(code.lowercased().unicodeScalars.filter { $0.properties.isAlphabetic }))
        }

        /// Token endpoint: POST with grant_type, or grant_type in the query (a GET there is a client bug the
        /// analyzer reports).
        func isTokenRequest(after roles: [OAuthRole]) -> Bool {
            (method == "POST" && f.has("grant_type", in: requestBody))
                || (f.has("grant_type", in: requestQuery) && !roles.contains(.authorizationRequest))
        }

        /// Device authorization: POST client_id (no grant_type) answered with device_code + user_code.
        func isDeviceAuthorization(after roles: [OAuthRole]) -> Bool {
            let devicePath =
                path.hasSuffix("/device_authorization") || path.hasSuffix("/devicecode")
                || path.hasSuffix("/device/code")
            return method == "POST" && !roles.contains(.token)
                && ((f.has("device_code", in: response) && f.has("user_code", in: response))
                    || (devicePath && f.hasInRequest("client_id")))
        }

        /// Introspection / revocation: POST with `token`.
        func tokenManagementRole(after roles: [OAuthRole]) -> OAuthRole? {
            guard method == "POST", f.has("token", in: requestBody), !roles.contains(.token) else { return nil }
            if f.has("active", in: response) || path.utf8Contains("introspect") { return .introspection }
            if path.utf8Contains("revoke") || path.utf8Contains("revocation")
                || (f.status == 200 && !f.params.contains { $0.location == response })
            {
                return .revocation
            }
            return nil
        }

        /// Userinfo: a bearer-authenticated call answered with `sub`, or the conventional path.
        func isUserinfo(after roles: [OAuthRole]) -> Bool {
            let bearer =
                f.requestHeaders.value(of: "authorization").map {
                    $0.lowercased().hasPrefix("bearer ") || $0.lowercased().hasPrefix("dpop ")
                } ?? false
            return roles.isEmpty && (method == "GET" || method == "POST")
                && ((bearer && f.has("sub", in: response) && !f.has("active", in: response))
                    || path.hasSuffix("/userinfo"))
        }
    }
}
