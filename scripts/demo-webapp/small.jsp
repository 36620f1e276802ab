<%@ page session="false" contentType="text/plain" trimDirectiveWhitespaces="true" %>hello from <%= System.getProperty("jvmRoute") %>
