<%@ page contentType="text/plain; charset=UTF-8" session="false" trimDirectiveWhitespaces="true" %>
<%
    // What Tomcat learned of the client's TLS connection (over AJP, from pounce's is_ssl and
    // SSL attributes, as from mod_jk).
    java.security.cert.X509Certificate[] certs = (java.security.cert.X509Certificate[]) request.getAttribute("jakarta.servlet.request.X509Certificate");
%>
secure=<%= request.isSecure() %>
scheme=<%= request.getScheme() %>
port=<%= request.getServerPort() %>
cipher=<%= request.getAttribute("jakarta.servlet.request.cipher_suite") %>
keysize=<%= request.getAttribute("jakarta.servlet.request.key_size") %>
session=<%= request.getAttribute("jakarta.servlet.request.ssl_session_id") %>
protocol=<%= request.getAttribute("org.apache.tomcat.util.net.secure_protocol_version") %>
cert=<%= certs == null || certs.length == 0 ? "none" : certs[0].getSubjectX500Principal().toString() %>
