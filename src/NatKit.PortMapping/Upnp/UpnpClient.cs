using System.Globalization;
using System.Net;
using System.Text;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.PortMapping.Upnp;

/// <summary>A UPnP request failed: the device answered with a UPnPError, an HTTP error, or something that is not a
/// UPnP answer. <see cref="Error"/> is the UPnPError (<see cref="UpnpError.None"/> when there was none).</summary>
public sealed class UpnpException : Exception
{
    public UpnpException(UpnpError error, string message, Exception? inner = null)
        : base(message, inner)
    {
        Error = error;
    }

    public UpnpException()
        : this(UpnpError.None, "UPnP request failed")
    {
    }

    public UpnpException(string message)
        : this(UpnpError.None, message)
    {
    }

    public UpnpException(string message, Exception inner)
        : this(UpnpError.None, message, inner)
    {
    }

    public UpnpError Error { get; }
}

/// <summary>A mapping a UPnP IGD granted.</summary>
/// <param name="Protocol">Tcp or Udp.</param>
/// <param name="InternalPort">The port on this host.</param>
/// <param name="External">The external address and port others reach it at.</param>
/// <param name="Lifetime">The lease asked for (the IGD may cut it; see
/// <see cref="UpnpClient.GetSpecificPortMappingEntryAsync"/>).</param>
public sealed record UpnpMapping(IpProtocol Protocol, int InternalPort, IPEndPoint External, TimeSpan Lifetime);

/// <summary>
/// A UPnP IGD control point on <see cref="INetwork"/>: finds the router by SSDP, reads its description, and asks its
/// WANIPConnection (IGD:2, or IGD:1 and WANPPPConnection) for the external address and port mappings. Runs on real
/// sockets and in the lab alike; every wait is bounded by the caller's token and <see cref="Timeout"/> on the
/// network's clock.
/// </summary>
public sealed class UpnpClient
{
    /// <summary>What a search asks for: IGD:2's WANIPConnection first, then any IGD.</summary>
    public static IReadOnlyList<string> SearchTargets { get; } =
    [
        UpnpDeviceDescription.InternetGatewayDevice2,
        "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    ];

    /// <summary>The longest answer read from a device.</summary>
    public const int MaxResponseBytes = 64 * 1024;

    private readonly INetwork _network;

    private UpnpClient(INetwork network, Uri location, UpnpDeviceDescription description, UpnpService service,
        Uri control, IPAddress localAddress)
    {
        _network = network;
        Location = location;
        Description = description;
        Service = service;
        ControlUrl = control;
        LocalAddress = localAddress;
    }

    /// <summary>Where the description was read.</summary>
    public Uri Location { get; }

    /// <summary>The device's description.</summary>
    public UpnpDeviceDescription Description { get; }

    /// <summary>The WAN connection service used.</summary>
    public UpnpService Service { get; }

    /// <summary>Its control URL.</summary>
    public Uri ControlUrl { get; }

    /// <summary>This host's address toward the IGD (the internal client of its mappings).</summary>
    public IPAddress LocalAddress { get; }

    /// <summary>The most time one HTTP exchange may take.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Sends M-SEARCHes from <paramref name="localAddress"/> (multicast out of that interface only) and collects the
    /// description URLs that answer within <paramref name="wait"/>, in the order they first answered.
    /// </summary>
    /// <exception cref="ArgumentException">The network has no multicast.</exception>
    public static async Task<IReadOnlyList<Uri>> DiscoverAsync(INetwork network, IPAddress localAddress, TimeSpan wait,
        CancellationToken cancellationToken = default) =>
        await DiscoverAsync(network, localAddress, wait, SsdpMessage.Port, cancellationToken);

    /// <summary>As <see cref="DiscoverAsync(INetwork, IPAddress, TimeSpan, CancellationToken)"/>, to another SSDP port
    /// than 1900 (a test's IGD on a shared machine's loopback).</summary>
    public static async Task<IReadOnlyList<Uri>> DiscoverAsync(INetwork network, IPAddress localAddress, TimeSpan wait,
        int ssdpPort, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(localAddress);
        if (network is not IMulticastNetwork multicast)
        {
            throw new ArgumentException("SSDP needs a network with multicast (IMulticastNetwork)", nameof(network));
        }

        await using var socket = await multicast.BindMulticastUdpAsync(new IPEndPoint(localAddress, 0), cancellationToken);
        socket.SetMulticastSend(localAddress, timeToLive: 2);
        // Devices answer a random time up to MX later (UDA 2.0 section 1.3.2): ask for a second less than we wait,
        // so the last answers still land inside the window.
        var mx = Math.Clamp((int)Math.Floor(wait.TotalSeconds) - 1, 1, 5);
        foreach (var target in SearchTargets)
        {
            await socket.SendToAsync(SsdpMessage.Search(target, mx), new IPEndPoint(SsdpMessage.Group, ssdpPort),
                cancellationToken);
        }

        var found = new List<Uri>();
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var timer = network.TimeProvider.CreateTimer(static s => ((CancellationTokenSource)s!).Cancel(), deadline,
            wait, System.Threading.Timeout.InfiniteTimeSpan);
        var buffer = new byte[2048];
        while (true)
        {
            ReceivedDatagram d;
            try
            {
                d = await socket.ReceiveFromAsync(buffer, deadline.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return found;
            }

            if (SsdpMessage.TryParse(buffer.AsSpan(0, d.Length), out var m) && m.Kind == SsdpKind.Response &&
                Uri.TryCreate(m.Location, UriKind.Absolute, out var location) && location.Scheme == Uri.UriSchemeHttp &&
                !found.Contains(location) && found.Count < 16)
            {
                found.Add(location);
            }
        }
    }

    /// <summary>Discovers the IGD from <paramref name="localAddress"/> and connects to the first that has a WAN
    /// connection service.</summary>
    /// <exception cref="UpnpException">No IGD answered, or none could be used.</exception>
    public static async Task<UpnpClient> DiscoverAndConnectAsync(INetwork network, IPAddress localAddress,
        TimeSpan wait, CancellationToken cancellationToken = default)
    {
        var locations = await DiscoverAsync(network, localAddress, wait, cancellationToken);
        UpnpException? last = null;
        foreach (var location in locations)
        {
            try
            {
                return await ConnectAsync(network, location, localAddress, cancellationToken);
            }
            catch (UpnpException e)
            {
                last = e;
            }
        }

        throw last ?? new UpnpException($"no UPnP IGD answered from {localAddress} within {wait.TotalSeconds:0.#} s");
    }

    /// <summary>Reads the description at <paramref name="location"/> and picks its WAN connection service.</summary>
    /// <exception cref="UpnpException">It could not be read, or it has no WAN connection service.</exception>
    public static async Task<UpnpClient> ConnectAsync(INetwork network, Uri location, IPAddress localAddress,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(location);
        ArgumentNullException.ThrowIfNull(localAddress);
        var (status, body) = await ExchangeAsync(network, location, localAddress, "GET", null, null, TimeSpan.FromSeconds(5),
            cancellationToken);
        if (status != 200)
        {
            throw new UpnpException($"{location} answered HTTP {status}");
        }

        if (!UpnpDeviceDescription.TryParse(body, out var description))
        {
            throw new UpnpException($"{location} is not a UPnP device description");
        }

        var service = description.WanConnection ??
                      throw new UpnpException($"{location} ({description.DeviceType}) has no WAN connection service");
        var control = description.Resolve(location, service.ControlUrl) ??
                      throw new UpnpException($"{location}: the control URL {service.ControlUrl} is not http");
        return new UpnpClient(network, location, description, service, control, localAddress);
    }

    /// <summary>GetExternalIPAddress.</summary>
    public async Task<IPAddress> GetExternalAddressAsync(CancellationToken cancellationToken = default)
    {
        var r = await InvokeAsync("GetExternalIPAddress", [], cancellationToken);
        return IPAddress.TryParse(r["NewExternalIPAddress"], out var a)
            ? a
            : throw new UpnpException($"GetExternalIPAddress answered no address ({r["NewExternalIPAddress"]})");
    }

    /// <summary>
    /// Maps <paramref name="externalPort"/> (0: any) to <paramref name="internalPort"/> on this host. With a port
    /// asked for, AddPortMapping; with none, AddAnyPortMapping on an IGD:2 (on IGD:1, AddPortMapping with the
    /// internal port). A renewal is the same call again.
    /// </summary>
    /// <exception cref="UpnpException">The IGD refused (718 conflict, 728 no ports, 606 not allowed, ...).</exception>
    public async Task<UpnpMapping> AddPortMappingAsync(IpProtocol protocol, int internalPort, int externalPort,
        TimeSpan lifetime, string description = "NatKit", CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(internalPort, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(internalPort, 65535);
        ArgumentOutOfRangeException.ThrowIfNegative(externalPort);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(externalPort, 65535);
        var lease = (uint)Math.Clamp(lifetime.TotalSeconds, 1, UpnpControlHandler.MaxLeaseSeconds);
        var external = await GetExternalAddressAsync(cancellationToken);
        var any = externalPort == 0 && Service.ServiceType == UpnpDeviceDescription.WanIpConnection2;
        var port = externalPort == 0 ? internalPort : externalPort;
        var arguments = new List<KeyValuePair<string, string>>
        {
            new("NewRemoteHost", ""),
            new("NewExternalPort", port.ToString(CultureInfo.InvariantCulture)),
            new("NewProtocol", protocol == IpProtocol.Tcp ? "TCP" : "UDP"),
            new("NewInternalPort", internalPort.ToString(CultureInfo.InvariantCulture)),
            new("NewInternalClient", LocalAddress.ToString()),
            new("NewEnabled", "1"),
            new("NewPortMappingDescription", description),
            new("NewLeaseDuration", lease.ToString(CultureInfo.InvariantCulture)),
        };
        if (any)
        {
            var r = await InvokeAsync("AddAnyPortMapping", arguments, cancellationToken);
            if (!ushort.TryParse(r["NewReservedPort"], NumberStyles.None, CultureInfo.InvariantCulture, out var reserved) ||
                reserved == 0)
            {
                throw new UpnpException($"AddAnyPortMapping answered no port ({r["NewReservedPort"]})");
            }

            port = reserved;
        }
        else
        {
            await InvokeAsync("AddPortMapping", arguments, cancellationToken);
        }

        return new UpnpMapping(protocol, internalPort, new IPEndPoint(external, port), TimeSpan.FromSeconds(lease));
    }

    /// <summary>DeletePortMapping; false when the IGD had no such mapping (714).</summary>
    public async Task<bool> DeletePortMappingAsync(IpProtocol protocol, int externalPort,
        CancellationToken cancellationToken = default)
    {
        try
        {
            await InvokeAsync("DeletePortMapping",
            [
                new("NewRemoteHost", ""),
                new("NewExternalPort", externalPort.ToString(CultureInfo.InvariantCulture)),
                new("NewProtocol", protocol == IpProtocol.Tcp ? "TCP" : "UDP"),
            ], cancellationToken);
            return true;
        }
        catch (UpnpException e) when (e.Error == UpnpError.NoSuchEntryInArray)
        {
            return false;
        }
    }

    /// <summary>GetSpecificPortMappingEntry: the internal endpoint and seconds left, or null when there is none.</summary>
    public async Task<(IPEndPoint Internal, TimeSpan LeaseLeft, string Description)?> GetSpecificPortMappingEntryAsync(
        IpProtocol protocol, int externalPort, CancellationToken cancellationToken = default)
    {
        UpnpAction r;
        try
        {
            r = await InvokeAsync("GetSpecificPortMappingEntry",
            [
                new("NewRemoteHost", ""),
                new("NewExternalPort", externalPort.ToString(CultureInfo.InvariantCulture)),
                new("NewProtocol", protocol == IpProtocol.Tcp ? "TCP" : "UDP"),
            ], cancellationToken);
        }
        catch (UpnpException e) when (e.Error == UpnpError.NoSuchEntryInArray)
        {
            return null;
        }

        if (!IPAddress.TryParse(r["NewInternalClient"], out var client) ||
            !ushort.TryParse(r["NewInternalPort"], NumberStyles.None, CultureInfo.InvariantCulture, out var port) ||
            !uint.TryParse(r["NewLeaseDuration"], NumberStyles.None, CultureInfo.InvariantCulture, out var left))
        {
            throw new UpnpException("GetSpecificPortMappingEntry answered malformed values");
        }

        return (new IPEndPoint(client, port), TimeSpan.FromSeconds(left), r["NewPortMappingDescription"] ?? "");
    }

    /// <summary>Invokes an action on the WAN connection service; its response's arguments.</summary>
    /// <exception cref="UpnpException">A fault (with its error code), an HTTP error or a malformed answer.</exception>
    public async Task<UpnpAction> InvokeAsync(string action, IReadOnlyList<KeyValuePair<string, string>> arguments,
        CancellationToken cancellationToken = default)
    {
        var request = new UpnpAction(Service.ServiceType, action, arguments);
        var (status, body) = await ExchangeAsync(_network, ControlUrl, LocalAddress, "POST", request.ToRequestXml(),
            request.SoapActionHeader, Timeout, cancellationToken);
        if (!UpnpAction.TryParseResponse(body, out var response, out var fault))
        {
            throw new UpnpException($"{action}: {ControlUrl} answered HTTP {status} without a SOAP response");
        }

        if (fault != UpnpError.None)
        {
            throw new UpnpException(fault, $"{action} refused: UPnP error {(int)fault} {UpnpErrors.Description(fault)}");
        }

        if (response.Name != action)
        {
            throw new UpnpException($"{action}: the answer is for {response.Name}");
        }

        return response;
    }

    /// <summary>One HTTP/1.1 request on a fresh connection (Connection: close); the status and the body as text.</summary>
    private static async Task<(int Status, string Body)> ExchangeAsync(INetwork network, Uri url, IPAddress localAddress,
        string method, string? soap, string? soapAction, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (!IPAddress.TryParse(url.Host, out var host))
        {
            throw new UpnpException($"{url}: the host is not an address (NatKit does not resolve names here)");
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var timer = network.TimeProvider.CreateTimer(static s => ((CancellationTokenSource)s!).Cancel(), deadline,
            timeout, System.Threading.Timeout.InfiniteTimeSpan);
        var token = deadline.Token;
        try
        {
            await using var connection = await network.ConnectTcpAsync(new IPEndPoint(host, url.Port),
                new IPEndPoint(localAddress, 0), token);
            var body = soap is null ? [] : Encoding.UTF8.GetBytes(soap);
            var fields = new List<KeyValuePair<string, string>>
            {
                new("Host", url.Authority),
                new("Connection", "close"),
                new("User-Agent", "NatKit UPnP/2.0"),
            };
            if (soap is not null)
            {
                fields.Add(new("Content-Type", "text/xml; charset=\"utf-8\""));
                fields.Add(new("SOAPAction", soapAction!));
                fields.Add(new("Content-Length", body.Length.ToString(CultureInfo.InvariantCulture)));
            }

            var head = Encoding.ASCII.GetBytes(UpnpHttpHead.Format($"{method} {url.PathAndQuery} HTTP/1.1", fields));
            var stream = connection.Stream;
            await stream.WriteAsync(head, token);
            if (body.Length > 0)
            {
                await stream.WriteAsync(body, token);
            }

            await stream.FlushAsync(token);
            return await ReadResponseAsync(stream, url, token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new UpnpException($"{method} {url}: no answer within {timeout.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is NetworkException or IOException)
        {
            throw new UpnpException($"{method} {url}: {e.Message}", e);
        }
    }

    /// <summary>Reads a response: its head, then the body by Content-Length, chunks, or until the close.</summary>
    private static async Task<(int Status, string Body)> ReadResponseAsync(Stream stream, Uri url, CancellationToken token)
    {
        var buffer = new byte[MaxResponseBytes];
        var filled = 0;
        var headEnd = -1;
        UpnpHttpHead? head = null;
        while (true)
        {
            if (head is null && (headEnd = UpnpHttpHead.FindEnd(buffer.AsSpan(0, filled))) >= 0)
            {
                if (!UpnpHttpHead.TryParse(buffer.AsSpan(0, filled), out head) || head.IsRequest)
                {
                    throw new UpnpException($"{url} answered something that is not HTTP");
                }

                if (head.ContentLength >= 0 && filled - headEnd >= head.ContentLength)
                {
                    break;
                }
            }
            else if (head is not null && head.ContentLength >= 0 && filled - headEnd >= head.ContentLength)
            {
                break;
            }

            if (headEnd == -2 || filled == buffer.Length)
            {
                throw new UpnpException($"{url} answered more than {MaxResponseBytes} bytes");
            }

            var n = await stream.ReadAsync(buffer.AsMemory(filled), token);
            if (n == 0)
            {
                break;
            }

            filled += n;
        }

        if (head is null)
        {
            throw new UpnpException($"{url} closed the connection before a whole answer");
        }

        var body = buffer.AsSpan(headEnd, filled - headEnd);
        if (head.ContentLength >= 0)
        {
            body = body[..(int)Math.Min(body.Length, head.ContentLength)];
        }
        else if (head.IsChunked)
        {
            body = Dechunk(body, url);
        }

        return (head.StatusCode, Encoding.UTF8.GetString(body));
    }

    /// <summary>Joins a chunked body's chunks (RFC 9112 section 7.1); extensions and trailers are ignored.</summary>
    private static Span<byte> Dechunk(Span<byte> chunked, Uri url)
    {
        var output = new byte[chunked.Length];
        var written = 0;
        var at = 0;
        while (true)
        {
            var lineEnd = chunked[at..].IndexOf((byte)'\n');
            if (lineEnd < 0)
            {
                throw new UpnpException($"{url}: a chunked answer was cut short");
            }

            var line = Encoding.ASCII.GetString(chunked.Slice(at, lineEnd)).Trim();
            var semicolon = line.IndexOf(';', StringComparison.Ordinal);
            if (semicolon >= 0)
            {
                line = line[..semicolon];
            }

            if (!int.TryParse(line, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var size) ||
                size < 0)
            {
                throw new UpnpException($"{url}: a chunk size is malformed");
            }

            at += lineEnd + 1;
            if (size == 0)
            {
                return output.AsSpan(0, written);
            }

            if (size > chunked.Length - at)
            {
                throw new UpnpException($"{url}: a chunked answer was cut short");
            }

            chunked.Slice(at, size).CopyTo(output.AsSpan(written));
            written += size;
            at += size;
            while (at < chunked.Length && chunked[at] is (byte)'\r' or (byte)'\n')
            {
                at++;
            }
        }
    }
}
