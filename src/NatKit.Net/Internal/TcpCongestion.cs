using System.Net.Sockets;
using System.Text;

namespace NatKit.Net.Internal;

/// <summary>TCP_CONGESTION on a socket, shared by the real network's connections and listeners.</summary>
internal static class TcpCongestion
{
    private const int IpProtoTcp = 6;
    private const int TcpCongestionOption = 13; // linux/tcp.h
    private const int NameMax = 16; // TCP_CA_NAME_MAX, with its NUL

    public static string? Get(Socket socket)
    {
        Span<byte> name = stackalloc byte[NameMax];
        try
        {
            var n = socket.GetRawSocketOption(IpProtoTcp, TcpCongestionOption, name);
            var end = name[..n].IndexOf((byte)0);
            return Encoding.ASCII.GetString(end < 0 ? name[..n] : name[..end]);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or PlatformNotSupportedException)
        {
            return null;
        }
    }

    public static void Set(Socket socket, string algorithm)
    {
        ArgumentNullException.ThrowIfNull(algorithm);
        if (!IsWellFormed(algorithm))
        {
            throw new NetworkException(SocketError.InvalidArgument,
                $"'{algorithm}' is not a congestion control name (letters, digits, '_' and '-', at most {NameMax - 1})");
        }

        try
        {
            socket.SetRawSocketOption(IpProtoTcp, TcpCongestionOption, Encoding.ASCII.GetBytes(algorithm));
        }
        catch (Exception e) when (e is SocketException or PlatformNotSupportedException)
        {
            var available = SystemNetwork.AvailableCongestionControl;
            // EPERM: known but not in the allowed list; ENOENT: not built in and not loadable
            var why = e is SocketException { SocketErrorCode: SocketError.AccessDenied } or SocketException { NativeErrorCode: 1 }
                ? "only root may use an algorithm outside net.ipv4.tcp_allowed_congestion_control"
                : available.Count == 0
                    ? "this system does not let sockets choose one"
                    : $"available: {string.Join(' ', available)}";
            throw new NetworkException(e is SocketException s ? s.SocketErrorCode : SocketError.OperationNotSupported,
                $"the kernel refused congestion control '{algorithm}' ({why})", e);
        }
    }

    /// <summary>A kernel algorithm name: what the kernel could know, nothing that could smuggle anything.</summary>
    private static bool IsWellFormed(string algorithm)
    {
        if (algorithm.Length is 0 or >= NameMax)
        {
            return false;
        }

        foreach (var c in algorithm)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('_' or '-'))
            {
                return false;
            }
        }

        return true;
    }
}
