<%@ page session="false" contentType="text/plain" trimDirectiveWhitespaces="true" %><%
    // Where Tomcat thinks the request went (its server name and port come from Host, or from
    // the AJP request's fields), and with ?redirect an absolute redirect built from them, as
    // Tomcat and most frameworks write one (the default port left out).
    int port = request.getServerPort();
    String self = request.getScheme() + "://" + request.getServerName() + (port == 80 ? "" : ":" + port);
    if (request.getParameter("redirect") != null) {
        response.setHeader("Location", self + "/hello.txt");
        response.setHeader("Refresh", "0; url=" + self + "/hello.txt");
        response.setStatus(302);
        return;
    }
%>server=<%= request.getServerName() %>
port=<%= port %>
