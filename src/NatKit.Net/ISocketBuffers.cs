namespace NatKit.Net;

/// <summary>
/// Optional capability of a socket whose kernel buffers can be sized (the real network's UDP sockets; the lab's
/// need not offer it). A server that takes many clients' datagrams on one socket asks for a larger receive buffer
/// so a short pause does not turn into kernel drops. The kernel may cap the request (Linux: net.core.rmem_max).
/// </summary>
public interface ISocketBuffers
{
    /// <summary>Requests buffer sizes in bytes; 0 leaves one unchanged. Returns false if the system refused.</summary>
    bool TrySetBufferSizes(int receiveBytes, int sendBytes);
}
