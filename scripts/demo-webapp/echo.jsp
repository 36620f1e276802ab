<%@ page session="false" trimDirectiveWhitespaces="true" %><%
    // Echoes the request body byte for byte, with the route that served it.
    response.setContentType("application/octet-stream");
    response.setHeader("X-Route", System.getProperty("jvmRoute"));
    response.setHeader("X-Query", request.getQueryString() == null ? "" : request.getQueryString());
    java.io.InputStream in = request.getInputStream();
    java.io.OutputStream o = response.getOutputStream();
    byte[] buf = new byte[65536];
    int n;
    while ((n = in.read(buf)) > 0) { o.write(buf, 0, n); }
    o.flush();
%>
