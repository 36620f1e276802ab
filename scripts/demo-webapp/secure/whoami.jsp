<%@ page contentType="text/plain; charset=UTF-8" session="false" trimDirectiveWhitespaces="true" %>
user=<%= request.getRemoteUser() %>
auth=<%= request.getAuthType() %>
