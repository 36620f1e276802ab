<%@ page contentType="text/plain; charset=UTF-8" session="true" trimDirectiveWhitespaces="true" %>
<%
    Integer count = (Integer) session.getAttribute("count");
    count = (count == null) ? 1 : count + 1;
    // setAttribute again after every change so the cluster replicates it.
    session.setAttribute("count", count);
    Object original = request.getAttribute("org.apache.catalina.ha.session.JvmRouteOriginalSessionID");
%>
session=<%= session.getId() %>
route=<%= System.getProperty("jvmRoute") %>
count=<%= count %>
original=<%= original == null ? "-" : original %>
