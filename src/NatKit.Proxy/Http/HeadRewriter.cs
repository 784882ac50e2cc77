namespace NatKit.Proxy.Http;

/// <summary>What the proxy says about the client connection in a response it forwards.</summary>
internal enum ConnectionDirective : byte
{
    None,
    Close,
    KeepAlive,
    Upgrade,
}

/// <summary>
/// Writes the heads the proxy forwards (RFC 9110 7.6, RFC 9112 3.2.2 and 6): hop-by-hop fields and every field
/// named in Connection removed, framing fields re-emitted by the proxy itself (so a Connection option can never
/// strip a Content-Length), Host taken from the absolute-form target, Via appended.
/// </summary>
internal static class HeadRewriter
{
    /// <summary>The request head sent upstream.</summary>
    /// <param name="head">The bytes the client's head was parsed from.</param>
    /// <param name="request">The parsed request.</param>
    /// <param name="target">The parsed target (ranges relative to the target).</param>
    /// <param name="absoluteForm">Send the absolute-form target (to a parent proxy) instead of origin-form.</param>
    /// <param name="framing">How the body is framed upstream.</param>
    /// <param name="via">The complete Via field line.</param>
    /// <param name="w">Where the head is written.</param>
    /// <param name="proxyAuthorization">A complete Proxy-Authorization field line for a parent proxy (the
    /// client's own is never forwarded), or empty.</param>
    public static bool WriteRequest(ReadOnlySpan<byte> head, HttpHead request, in RequestTarget target,
        bool absoluteForm, BodyFraming framing, ReadOnlySpan<byte> via, ref HeadWriter w,
        ReadOnlySpan<byte> proxyAuthorization = default)
    {
        var targetBytes = request.Target.Of(head);
        var webSocket = IsWebSocketUpgrade(request);
        w.Append(request.Method.Of(head));
        w.Append(" "u8);
        if (absoluteForm)
        {
            w.Append(targetBytes);
        }
        else
        {
            var path = target.PathAndQuery.Of(targetBytes);
            if (path.IsEmpty)
            {
                w.Append(request.Method.Of(head).SequenceEqual("OPTIONS"u8) ? "*"u8 : "/"u8);
            }
            else
            {
                if (path[0] == (byte)'?')
                {
                    w.Append("/"u8);
                }

                w.Append(path);
            }
        }

        w.Append(" HTTP/1.1\r\nHost: "u8);
        w.Append(target.Authority.Of(targetBytes));
        w.Append("\r\n"u8);
        WriteEndToEndFields(head, request, webSocket, ref w);
        if (framing == BodyFraming.Chunked)
        {
            w.Append("Transfer-Encoding: chunked\r\n"u8);
        }
        else if (request.HasContentLength)
        {
            w.Append("Content-Length: "u8);
            w.AppendNumber(request.ContentLength);
            w.Append("\r\n"u8);
        }

        if (webSocket)
        {
            w.Append("Connection: Upgrade\r\n"u8);
        }

        w.Append(proxyAuthorization);
        w.Append(via);
        w.Append("\r\n"u8);
        return !w.Overflowed;
    }

    /// <summary>The response head sent to the client.</summary>
    public static bool WriteResponse(ReadOnlySpan<byte> head, HttpHead response, BodyFraming framing,
        ConnectionDirective directive, ReadOnlySpan<byte> via, ref HeadWriter w)
    {
        w.Append("HTTP/1.1 "u8);
        w.AppendNumber(response.StatusCode);
        w.Append(" "u8);
        w.Append(response.Reason.Of(head));
        w.Append("\r\n"u8);
        WriteEndToEndFields(head, response, directive == ConnectionDirective.Upgrade, ref w);
        if (framing == BodyFraming.Chunked)
        {
            w.Append("Transfer-Encoding: chunked\r\n"u8);
        }
        else if (response.HasContentLength && response.StatusCode != 204 && response.StatusCode >= 200 &&
                 !response.HasTransferEncoding)
        {
            // for HEAD and 304 the length describes the representation, not this message: still forwarded
            w.Append("Content-Length: "u8);
            w.AppendNumber(response.ContentLength);
            w.Append("\r\n"u8);
        }

        switch (directive)
        {
            case ConnectionDirective.Close:
                w.Append("Connection: close\r\n"u8);
                break;
            case ConnectionDirective.KeepAlive:
                w.Append("Connection: keep-alive\r\n"u8);
                break;
            case ConnectionDirective.Upgrade:
                w.Append("Connection: Upgrade\r\n"u8);
                break;
            default:
                break;
        }

        w.Append(via);
        w.Append("\r\n"u8);
        return !w.Overflowed;
    }

    /// <summary>A request asking to switch to WebSocket (RFC 6455 4.1), which the proxy carries through.</summary>
    public static bool IsWebSocketUpgrade(HttpHead h) => h.UpgradeWebSocket && h.ConnectionUpgrade;

    private static void WriteEndToEndFields(ReadOnlySpan<byte> head, HttpHead h, bool keepUpgrade, ref HeadWriter w)
    {
        foreach (ref readonly var f in h.Fields)
        {
            switch (f.Kind)
            {
                case FieldKind.Upgrade when keepUpgrade:
                    break;
                case FieldKind.Other:
                case FieldKind.Expect:
                case FieldKind.ProxyAuthenticate:
                    if (h.ConnectionTokenCount > 0 && h.IsListedInConnection(head, f.Name.Of(head)))
                    {
                        continue;
                    }

                    break;
                default:
                    // Host, framing (re-emitted), Connection and its kin, TE, Trailer, Upgrade,
                    // Proxy-Authorization: hop-by-hop or ours to write
                    continue;
            }

            w.AppendField(f.Name.Of(head), f.Value.Of(head));
        }
    }
}
